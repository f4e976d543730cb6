from qtrack.cli import main

raise SystemExit(main())
