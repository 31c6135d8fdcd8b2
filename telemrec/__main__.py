from telemrec.cli import main

main()
