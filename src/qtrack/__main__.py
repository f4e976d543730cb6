from qtrack.cli.app import main

raise SystemExit(main())
