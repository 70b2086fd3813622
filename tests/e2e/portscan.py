"""A bounded TCP connect() scan, run where the test puts it (`ip netns exec ...`):
`python -m tests.e2e.portscan ADDRESS` prints the open ports as JSON. Each of the
65,535 ports is tried once, 2,000 at a time, 1 s at most."""

from __future__ import annotations

import json
import resource
import sys

from onebox.audit import open_ports

if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    print(json.dumps(open_ports(sys.argv[1], list(range(1, 65536)), workers=2000)))
