"""A leader-election candidate process for tests: prints LEADING/STOPPED lines with wall-clock times."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.leaderelection import LeaderElectionConfig, LeaderElector


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--lease", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--durations", default="3,2,0.5", help="lease,renew,retry seconds")
    opts = parser.parse_args()
    lease, renew, retry = (float(x) for x in opts.durations.split(","))
    client = ApiClient(ClientConfig(endpoints=[opts.server], timeout=5))
    config = LeaderElectionConfig("navarch-system", opts.lease, opts.identity, lease, renew, retry)

    async def lead() -> None:
        print(f"LEADING {opts.identity} {time.time():.3f}", flush=True)
        await asyncio.Event().wait()

    def stopped() -> None:
        print(f"STOPPED {opts.identity} {time.time():.3f}", flush=True)

    print(f"CANDIDATE {opts.identity}", flush=True)
    await LeaderElector(client, config, on_started_leading=lead, on_stopped_leading=stopped).run()
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
