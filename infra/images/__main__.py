from infra.images.build import main

raise SystemExit(main())
