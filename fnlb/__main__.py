from fnlb.cli import main

raise SystemExit(main())
