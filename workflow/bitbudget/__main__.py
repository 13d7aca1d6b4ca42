from bitbudget.cli import main

raise SystemExit(main())
