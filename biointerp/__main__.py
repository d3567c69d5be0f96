from biointerp.cli import main

main()
