from memsafe_fix.cli import main

main()
