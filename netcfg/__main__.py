from netcfg.cli.app import main

if __name__ == "__main__":  # spawned ranks (--nproc) import this module again: they must not run the CLI
    main()
