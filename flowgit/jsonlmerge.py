"""`python -m flowgit.jsonlmerge BASE OURS THEIRS`, as older clones' git config names the merge
driver; the code is in `flowgit.formats.jsonlmerge`."""
import sys

from flowgit.formats.jsonlmerge import merge_driver_main

if __name__ == "__main__":
    raise SystemExit(merge_driver_main(sys.argv[1:]))
