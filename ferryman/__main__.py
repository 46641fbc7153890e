from ferryman.cli import main

raise SystemExit(main())
