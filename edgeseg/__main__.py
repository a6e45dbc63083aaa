from edgeseg.cli import main

raise SystemExit(main())
