from nbs2i.cli import main

main()
