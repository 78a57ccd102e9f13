"""The config each server of the benchmark runs with, as text (written to a
file by bench.py, and quoted whole in the report so a run can be repeated).

Every server gets the equivalent settings (o["h2"]: HTTP/2 offered by ALPN
over TLS and with prior knowledge (h2c) over cleartext): 1 worker (process or thread),
keep-alive without a request limit, sendfile where it has it, its own file
cache on (off for the uncached many-files case), the access log off (on, in
the combined format, for the log case), 127.0.0.1 and an ephemeral port.
Over TLS: the same ECDSA P-256 certificate, TLS 1.3, AES-128-GCM (pinned on
the server where the server can pin it; the client is pinned too).

Pure functions of their arguments; no imports from the rest of the harness.
"""

# TLS 1.3 suite every TLS case is pinned to.
SUITE = "TLS_AES_128_GCM_SHA256"


def nginx(o):
    """o: dict with port, root, work, tag, workers, log, cache, tls, h2, cert, key, conns, nofile.
    1.22's `listen ... http2` without ssl is HTTP/2 with prior knowledge."""
    tls = ""
    listen = f"127.0.0.1:{o['port']}"
    if o["tls"]:
        listen += " ssl"
        tls = (f"\n    ssl_certificate {o['cert']}; ssl_certificate_key {o['key']};"
               f"\n    ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites {SUITE};")
    if o.get("h2"):
        listen += " http2"
    log = f"{o['work']}/{o['tag']}.access.log combined buffer=32k flush=1s" if o["log"] else "off"
    cache = "open_file_cache max=20000 inactive=60s;" if o["cache"] else "open_file_cache off;"
    return f"""worker_processes {o['workers']};
worker_rlimit_nofile {o['nofile']};
daemon off;
pid {o['work']}/{o['tag']}.pid;
error_log {o['work']}/{o['tag']}.err;
events {{ worker_connections {o['conns']}; }}
http {{
  access_log {log};
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 75s;
  {cache}
  default_type application/octet-stream;
  client_body_temp_path {o['work']}/{o['tag']}.body;
  server {{
    listen {listen}; root {o['root']};{tls}
  }}
}}
"""


def h2o(o):
    """h2o 2.2: one thread; it has no sendfile (it reads files into its
    buffers); its open-file cache is always on at its built-in size (2.2
    has no directive for it, so it has no uncached variant). It always
    offers h2 by ALPN and takes h2c with prior knowledge: nothing to add."""
    log = f'access-log: "{o["work"]}/{o["tag"]}.access.log"' if o["log"] else ""
    ssl = ""
    if o["tls"]:
        # 2.2 cannot pin a TLS 1.3 suite: the client's pin does.
        ssl = f"""
  ssl:
    certificate-file: "{o['cert']}"
    key-file: "{o['key']}"
    minimum-version: TLSv1.3"""
    return f"""num-threads: {o['workers']}
max-connections: {o['conns']}
error-log: "{o['work']}/{o['tag']}.err"
http1-request-timeout: 75
http2-idle-timeout: 75
file.send-gzip: OFF
{log}
listen:
  host: 127.0.0.1
  port: {o['port']}{ssl}
hosts:
  default:
    paths:
      /:
        file.dir: "{o['root']}"
        file.mime.settypes: {{}}
"""


def lighttpd(o):
    """lighttpd 1.4: one process (max-worker 0), sendfile, its stat cache
    (the file cache it has; "disable" for the uncached case)."""
    mods = []
    extra = ""
    if o["log"]:
        mods.append('"mod_accesslog"')
        extra += f'accesslog.filename = "{o["work"]}/{o["tag"]}.access.log"\n'
    if o["tls"]:
        mods.append('"mod_openssl"')
        extra += (f'ssl.engine = "enable"\nssl.pemfile = "{o["cert"]}"\nssl.privkey = "{o["key"]}"\n'
                  f'ssl.openssl.ssl-conf-cmd = ("MinProtocol" => "TLSv1.3", "Ciphersuites" => "{SUITE}")\n')
    return f"""server.modules = ({", ".join(mods)})
server.document-root = "{o['root']}"
server.bind = "127.0.0.1"
server.port = {o['port']}
server.pid-file = "{o['work']}/{o['tag']}.pid"
server.errorlog = "{o['work']}/{o['tag']}.err"
server.max-worker = 0
server.max-fds = {o['nofile']}
server.max-connections = {o['conns']}
server.network-backend = "sendfile"
server.stat-cache-engine = "{'simple' if o['cache'] else 'disable'}"
server.max-keep-alive-requests = 1000000
server.max-keep-alive-idle = 75
server.tag = "lighttpd"
mimetype.assign = ("" => "application/octet-stream")
{extra}"""


def tandem(o):
    """tandem at its defaults except: the engine, 1 worker, the logs, and
    cache_size = 0 for the uncached case (no byte cache and no open-file
    cache: every request opens its file)."""
    # With TLS, tandem still wants a plaintext listener: on a port nobody uses.
    lines = [f'listen = ["127.0.0.1:{o["plain_port"] if o["tls"] else o["port"]}"]',
             f'root = "{o["root"]}"',
             f'engine = "{o["engine"]}"',
             f"workers = {o['workers']}",
             f"max_connections = {o['conns']}",
             f'access_log = "{o["work"] + "/" + o["tag"] + ".access.log" if o["log"] else "off"}"',
             f'error_log = "{o["work"]}/{o["tag"]}.err"']
    if not o["cache"]:
        lines.append("cache_size = 0")
    if o.get("h2"):
        lines.append("http2_cleartext = true")  # http2 = true (ALPN h2) is the default
    if o["tls"]:
        lines += [f'tls_listen = ["127.0.0.1:{o["port"]}"]',
                  "[[tls_certificates]]", f'cert = "{o["cert"]}"', f'key = "{o["key"]}"']
    return "\n".join(lines) + "\n"


# The client side of the TLS cases: wrk and openssl read this through
# OPENSSL_CONF, which pins them to TLS 1.3, AES-128-GCM and X25519.
CLIENT_OPENSSL_CNF = f"""openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
Ciphersuites = {SUITE}
Groups = X25519
"""
