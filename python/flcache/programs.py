"""The flcache programs a Store runs for what is not the client's protocol:
`flcache query` (the query engine, next to the data: the same answers as the
CLI's by construction, rather than a second implementation of the Gram
matrices in Python) and `flcache aggregate` (the C mergers of a round). The
program is FLCACHE_BIN, flcache on PATH, or build/flcache of the checkout;
it gets the Store's URL as FLCACHE_REDIS."""
import json
import os
import shutil
import subprocess

from .errors import FlcacheError

_SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def find_flcache(explicit):
    for c in (explicit, os.environ.get("FLCACHE_BIN"), shutil.which("flcache"),
              os.path.join(os.environ.get("FLCACHE_BUILD_DIR", ""), "flcache"),
              os.path.join(_SRC, "build", "flcache")):
        if c and os.access(c, os.X_OK) and os.path.isfile(c):
            return c
    return None


class Programs:
    """Mixed into Store: needs self.url_text and self.flcache_bin."""

    def _run_flcache(self, args, what):
        b = find_flcache(self.flcache_bin)
        if b is None:
            raise FlcacheError("%s needs the flcache program: put it on PATH or set "
                               "FLCACHE_BIN" % what)
        env = dict(os.environ, FLCACHE_REDIS=self.url_text)
        return [b] + args, env

    def query(self, kind, job, round=None, rounds=None, client=None, k=None, seed=None,
              no_cache=False):
        """The answer of `flcache query KIND --json` as a dict: the same
        engine, run next to the data, so the answers are the CLI's own."""
        args = ["query", kind, "--job", job, "--json"]
        if round is not None:
            args += ["--round", str(int(round))]
        if rounds is not None:
            args += ["--rounds", "%d:%d" % tuple(rounds)]
        if client is not None:
            args += ["--client", client]
        if k is not None:
            args += ["--k", str(int(k))]
        if seed is not None:
            args += ["--seed", str(int(seed))]
        if no_cache:
            args.append("--no-cache")
        cmd, env = self._run_flcache(args, "query")
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise FlcacheError((p.stderr.strip() or "flcache query exited %d" % p.returncode))
        return json.loads(p.stdout)

    def aggregate(self, job, round, expect, model_size, num_shards=1, rule="fedavg",
                  readers=None, deadline_ms=60000, derive_stats=False, wait=True):
        """Runs the C mergers of a round (`flcache aggregate`). wait=True
        returns its report (a dict); wait=False the running subprocess.Popen
        (its stdout a pipe), so clients can push while it waits."""
        args = ["aggregate", "--job", job, "--round", str(int(round)),
                "--expect", ",".join(expect), "--model-size", str(int(model_size)),
                "--shards", str(int(num_shards)), "--rule", rule,
                "--deadline-ms", str(int(deadline_ms))]
        if readers is not None:
            args += ["--readers", str(int(readers))]
        if derive_stats:
            args.append("--derive-stats")
        cmd, env = self._run_flcache(args, "aggregate")
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        if not wait:
            return p
        return finish_aggregate(p)


def finish_aggregate(p):
    """Waits for a Store.aggregate(wait=False) process; its report."""
    out, err = p.communicate()
    if p.returncode != 0:
        raise FlcacheError(err.strip() or "flcache aggregate exited %d" % p.returncode)
    return json.loads(out)
