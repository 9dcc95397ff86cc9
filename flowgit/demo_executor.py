"""`python -m flowgit.demo_executor`, as demo repositories' configs name it; the code is in
`flowgit.runner.demo_executor`."""
import sys

from flowgit.runner.demo_executor import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
