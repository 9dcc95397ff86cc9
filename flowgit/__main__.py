from __future__ import annotations

from flowgit.main import main

raise SystemExit(main())
