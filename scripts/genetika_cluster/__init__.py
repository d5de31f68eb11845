"""What the fault harnesses share (`make faults`, `make chaos`): a durable broker (Tansu on a
local S3 endpoint from moto), a throwaway PostgreSQL cluster, network namespaces with
addresses of their own, and small helpers to wait and check.

Every address used here is on this machine: loopback, or the harness's own namespaces.
"""
import os
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TANSU = os.path.join(ROOT, ".deps/tansu/bin/tansu")
TOPICS = ["topic1", "topic2", "topic3", "ack", "dead-letter", "incomplete"]


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, what, interval=0.2):
    """Polls `condition` until it returns a true value; fails with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def in_netns(netns, argv):
    """`argv` run inside network namespace `netns` (None: this one)."""
    return (["ip", "netns", "exec", netns] + list(argv)) if netns else list(argv)


def port_open(port, host="127.0.0.1", netns=None):
    if netns is None:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex((host, port)) == 0
    probe = f"import socket,sys; s=socket.socket(); s.settimeout(0.3); sys.exit(s.connect_ex(({host!r}, {port})))"
    return subprocess.run(in_netns(netns, [sys.executable, "-c", probe]), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


class Moto:
    """A local S3 endpoint (moto's server) with the bucket Tansu stores into, on the loopback
    of `netns` (or of this namespace)."""

    def __init__(self, work, netns=None, port=None):
        self.port = port or free_port()
        self.netns = netns
        self.log = open(os.path.join(work, "moto.log"), "w")
        self.process = subprocess.Popen(in_netns(netns, [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]),
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: port_open(self.port, netns=netns), 30, "the S3 endpoint (moto)")
        body = '<CreateBucketConfiguration><LocationConstraint>eu-west-2</LocationConstraint></CreateBucketConfiguration>'
        create = (f"import urllib.request; urllib.request.urlopen(urllib.request.Request("
                  f"'http://127.0.0.1:{self.port}/tansu', data={body!r}.encode(), method='PUT'), timeout=10).read()")
        subprocess.run(in_netns(netns, [sys.executable, "-c", create]), check=True)

    def stop(self):
        self.process.kill()
        self.process.wait()


class Broker:
    """Tansu; `storage` is "memory" or a Moto (S3: topics survive a SIGKILL). By default on a
    free loopback port; `host`/`port`/`netns` put it elsewhere (its own namespace's address)."""

    def __init__(self, work, storage="memory", host="127.0.0.1", port=None, netns=None, partitions=3, topics=TOPICS):
        self.host = host
        self.port = port or free_port()
        self.netns = netns
        self.work = work
        self.storage = storage
        self.process = None
        self.log = open(os.path.join(work, "tansu.log"), "a")
        self.start()
        for topic in topics:
            subprocess.run(in_netns(netns, [TANSU, "topic", "create", "--broker", f"tcp://{host}:{self.port}",
                                            "--partitions", str(partitions), topic]),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def start(self):
        env = dict(os.environ)
        if self.storage == "memory":
            engine = "memory://tansu/"
        else:
            engine = "s3://tansu/"
            env.update(AWS_ENDPOINT=f"http://127.0.0.1:{self.storage.port}", AWS_ALLOW_HTTP="true",
                       AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="eu-west-2")
        url = f"tcp://{self.host}:{self.port}"
        self.process = subprocess.Popen(in_netns(self.netns, [TANSU, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                                              "--storage-engine", engine]),
                                        stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: port_open(self.port, self.host, self.netns), 30, "the broker to listen")

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Postgres:
    """A throwaway PostgreSQL cluster (trust authentication, user genetika) listening on
    `host:port`, run as the postgres user when this runs as root; `netns` puts it in a namespace."""

    def __init__(self, work, host="127.0.0.1", port=None, netns=None, network=None, options=""):
        bins = sorted(d for d in os.listdir("/usr/lib/postgresql") if os.path.isdir(f"/usr/lib/postgresql/{d}/bin"))
        check(bins, "no PostgreSQL server found; run 'make deps'")
        self.bin = f"/usr/lib/postgresql/{bins[-1]}/bin"
        self.dir = os.path.join(work, "pg")
        self.host, self.port, self.netns = host, port or free_port(), netns
        self.options = options
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(work, 0o755)
        if os.getuid() == 0:
            subprocess.run(["chown", "postgres", self.dir], check=True)
        self._owner(["initdb", "-D", f"{self.dir}/data", "-U", "genetika", "--auth=trust", "-E", "UTF8", "--no-sync"])
        if network:
            with open(f"{self.dir}/data/pg_hba.conf", "a") as hba:
                hba.write(f"host all all {network} trust\n")
        self.start()

    def _owner(self, argv, **kwargs):
        argv = [f"{self.bin}/{argv[0]}"] + argv[1:]
        if os.getuid() == 0:
            argv = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + argv
        return subprocess.run(in_netns(self.netns, argv), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)

    @property
    def url(self):
        return f"postgres://genetika@{self.host}:{self.port}/postgres"

    def start(self):
        self._owner(["pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/server.log", "-w", "-t", "60",
                     "-o", f"-p {self.port} -k {self.dir} -c listen_addresses={self.host} -c max_connections=200 {self.options}", "start"])

    def stop(self, mode="immediate"):
        if os.path.exists(f"{self.dir}/data/postmaster.pid"):
            try:
                self._owner(["pg_ctl", "-D", f"{self.dir}/data", "-m", mode, "-w", "stop"])
            except subprocess.CalledProcessError:
                pass

    def cpu_seconds(self):
        """The server's CPU time so far: the postmaster's own and its exited children's, plus
        every live child's (backends, checkpointer, WAL writer, autovacuum)."""
        tick = os.sysconf("SC_CLK_TCK")

        def stat(pid):
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            return int(fields[1]), [int(x) for x in fields[11:15]]  # ppid; utime stime cutime cstime
        try:
            postmaster = int(open(f"{self.dir}/data/postmaster.pid").readline())
            total = sum(stat(postmaster)[1])
        except (OSError, ValueError):
            return None
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    parent, times = stat(entry)
                except (OSError, IndexError, ValueError):
                    continue
                if parent == postmaster:
                    total += times[0] + times[1]
        return total / tick

    SETTINGS = ("server_version", "shared_buffers", "wal_buffers", "max_wal_size", "checkpoint_timeout", "fsync",
                "synchronous_commit", "full_page_writes", "wal_level", "work_mem")

    def settings(self):
        """The server settings a write-heavy benchmark depends on, as `name=value` text."""
        names = ", ".join(f"'{n}'" for n in self.SETTINGS)
        rows = self.query(f"SELECT name, setting, coalesce(unit, '') FROM pg_settings WHERE name IN ({names}) ORDER BY name")
        return ", ".join(f"{name}={value}{'' if unit in ('', '8kB') else ' ' + unit}" if unit != "8kB"
                         else f"{name}={int(value) * 8} kB" for name, value, unit in rows)

    def query(self, sql, timeout=30):
        """Rows of `sql` as lists of text (psql's unaligned output), or raises Failed."""
        result = subprocess.run(in_netns(self.netns, ["psql", self.url, "-v", "ON_ERROR_STOP=1", "-AtF", "\t", "-c", sql]),
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise Failed(f"psql: {result.stderr.strip()[:300]}")
        return [line.split("\t") for line in result.stdout.splitlines()]


class Network:
    """Hosts of the harness's own: one namespace per host, each with a veth into a bridge that
    lives in a namespace of its own (`<prefix>hub`), addresses from `subnet` (a /24 that exists
    only inside these namespaces). Faults: cut a host's link, or drop a share of its packets."""

    def __init__(self, prefix="gk", subnet="10.213.0"):
        self.prefix, self.subnet = prefix, subnet
        self.hub = f"{prefix}hub"
        self.hosts = {}
        self.cleanup()
        self._ip("netns", "add", self.hub)
        self._ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.hub, "link", "set", "br0", "up")
        self._ip("-n", self.hub, "link", "set", "lo", "up")

    @staticmethod
    def _ip(*args):
        subprocess.run(["ip", *args], check=True)

    def add(self, name, number):
        """Host `name` at subnet.number; returns its namespace and address."""
        ns = f"{self.prefix}-{name}"
        address = f"{self.subnet}.{number}"
        self._ip("netns", "add", ns)
        self._ip("-n", ns, "link", "set", "lo", "up")
        self._ip("link", "add", f"{self.prefix}{number}a", "type", "veth", "peer", "name", f"{self.prefix}{number}b")
        self._ip("link", "set", f"{self.prefix}{number}a", "netns", ns)
        self._ip("link", "set", f"{self.prefix}{number}b", "netns", self.hub)
        self._ip("-n", ns, "link", "set", f"{self.prefix}{number}a", "name", "eth0")
        self._ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        self._ip("-n", ns, "link", "set", "eth0", "up")
        self._ip("-n", self.hub, "link", "set", f"{self.prefix}{number}b", "master", "br0")
        self._ip("-n", self.hub, "link", "set", f"{self.prefix}{number}b", "up")
        self.hosts[name] = (ns, address, f"{self.prefix}{number}b")
        return ns, address

    def cut(self, name):
        """Drops every packet to and from the host (its bridge port down)."""
        self._ip("-n", self.hub, "link", "set", self.hosts[name][2], "down")

    def heal(self, name):
        self._ip("-n", self.hub, "link", "set", self.hosts[name][2], "up")
        self.unshape(name)

    def shape(self, name, loss_pct):
        """Drops `loss_pct` % of the packets the host sends and receives, at random (nftables in
        its namespace). This machine's kernel has no netem (nor tbf, htb, prio, sfq: "Specified
        qdisc kind is unknown"), so added delay cannot be drawn here; random loss makes TCP
        retransmit, which delays what crosses the link by hundreds of milliseconds at a time."""
        ns = self.hosts[name][0]
        self.unshape(name)
        rules = "table inet chaos {\n"
        for chain, hook in (("in", "input"), ("out", "output")):
            rules += f"  chain {chain} {{\n    type filter hook {hook} priority 0;\n    numgen random mod 100 < {loss_pct} drop\n  }}\n"
        rules += "}\n"
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)

    def unshape(self, name):
        subprocess.run(["ip", "netns", "exec", self.hosts[name][0], "nft", "delete", "table", "inet", "chaos"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cleanup(self):
        """Removes every namespace with this prefix (a run that was killed leaves them)."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
        for line in listed:
            ns = line.split(" ")[0]
            if ns == self.hub or ns.startswith(f"{self.prefix}-"):
                subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
                for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
                    try:
                        os.kill(int(pid), 9)
                    except (ProcessLookupError, ValueError):
                        pass
                subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
