from netcfg.cli.app import main

main()
