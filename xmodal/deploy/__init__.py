"""Deployment: ONNX export (fp32 and INT8), ONNX Runtime inference, the export cache, signing.

``onnx_model`` (loading and running an export) imports neither torch nor torchvision, so an
export directory runs on a machine without PyTorch; ``onnx_export`` and ``quantize`` need torch.
"""
