from memsafe_fix.entry import main

main()
