from __future__ import annotations

from flowgit.cli.main import main

raise SystemExit(main())
