"""The cache URLs the flcache CLI takes (cache/url.h), parsed for redis-py:

    redis://[[user]:password@]host[:port][/db][?cluster=yes|no]
    rediss://[[user]:password@]host[:port][/db][?cacert=F&cert=F&key=F&cluster=...]
    unix:///path/to/redis.sock[?db=N&user=U&password=P&cluster=no]
    unix://[[user]:password@]/path/to/redis.sock

Port defaults to 6379, db to 0; passwords may be percent-encoded. rediss://
always verifies the server's certificate (against cacert= or the system's
CAs) and its host name. sni= (a name other than the host) is refused: redis-py
verifies against the host it connects to.
"""
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import FlcacheError


@dataclass
class Url:
    kind: str            # "tcp" or "unix"
    host: str = ""
    port: int = 6379
    path: str = ""
    user: str = ""
    password: str = ""
    db: int = 0
    cluster: str = ""    # "yes", "no" or "" (ask the server)
    tls: bool = False
    cacert: str = ""
    cert: str = ""
    key: str = ""


_TLS_KEYS = ("cacert", "cert", "key")


def parse(text):
    """Parses text into a Url; FlcacheError names the problem."""
    try:
        u = urlsplit(text)
    except ValueError as e:
        raise FlcacheError("cache URL %r: %s" % (text, e)) from None
    q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
    allowed = {"cluster"}
    out = None
    if u.scheme in ("redis", "rediss"):
        if not u.hostname:
            raise FlcacheError("cache URL %r has no host" % text)
        try:
            port = u.port or 6379
        except ValueError:
            raise FlcacheError("cache URL %r: bad port" % text) from None
        db = u.path.lstrip("/")
        if db and not db.isdigit():
            raise FlcacheError("cache URL %r: database %r is not a number" % (text, db))
        out = Url("tcp", host=u.hostname, port=port, db=int(db or 0),
                  user=unquote(u.username or ""), password=unquote(u.password or ""),
                  tls=u.scheme == "rediss")
        if out.tls:
            allowed |= set(_TLS_KEYS) | {"sni"}
    elif u.scheme == "unix":
        path = unquote(u.path)
        if not path.startswith("/"):
            raise FlcacheError("cache URL %r: a unix socket path must be absolute" % text)
        db = q.get("db", "0")
        if not db.isdigit():
            raise FlcacheError("cache URL %r: db=%r is not a number" % (text, db))
        out = Url("unix", path=path, db=int(db),
                  user=q.get("user", unquote(u.username or "")),
                  password=q.get("password", unquote(u.password or "")))
        allowed |= {"db", "user", "password"}
    else:
        raise FlcacheError("cache URL %r: use redis://, rediss:// or unix://" % text)
    for k in q:
        if k not in allowed:
            raise FlcacheError("cache URL %r: unknown option %r%s" % (
                text, k, " (TLS options need rediss://)" if k in _TLS_KEYS else ""))
    if "sni" in q:
        raise FlcacheError("cache URL %r: sni= is not supported by the Python client "
                           "(redis-py verifies the certificate against the host)" % text)
    c = q.get("cluster", "")
    if c not in ("", "yes", "no"):
        raise FlcacheError("cache URL %r: cluster=%r, use yes or no" % (text, c))
    out.cluster = c
    for k in _TLS_KEYS:
        setattr(out, k, q.get(k, ""))
    return out
