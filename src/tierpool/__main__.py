from tierpool.cli import main

main()
