from xmodal.cli import main

main()
