#!/usr/bin/env python3
"""poolrelay against Postfix, side by side, on this machine, in one run.

Both relays get the same two pools (set-a -> 127.0.0.2, set-b -> 127.0.0.3), the same load and
deliver into the same sink, which also records the source address of every message: a run only
counts if every message arrived, from the right address. Runs alternate Postfix, poolrelay,
Postfix, poolrelay, ... Both relays run at their default log level: Postfix logs every message,
and so does poolrelay (`accepted`, `delivered`).

Two sets of tools, chosen with --tools (both by default, each run with each relay):
  poolrelay  `poolrelay load` (pipelines, reports MAIL->250 latency) into `poolrelay sink --stats`
  postfix    Postfix's `smtp-source` (one command at a time, one process per configuration set)
             into `smtp-sink` (each message dumped to a file on /dev/shm, read for its
             X-Client-Addr at the end)
Every process started here is stopped by its PID at the end. Loopback addresses only.

The DKIM scenarios sign every message for example.test with the same key (made with openssl):
poolrelay through an [[identity]], Postfix through Debian's OpenDKIM as a milter (its CPU is
counted with Postfix's). The sink counts messages carrying a DKIM-Signature; a run counts only
if every message was signed.

Run through benches/compare.sh, which installs Postfix and builds poolrelay first.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "poolrelay")
TICK = os.sysconf("SC_CLK_TCK")
SINK_PORT = 2791
SINK_DUMP = "/dev/shm/poolrelay-bench-sink"
POSTFIX_PORT = 2792
POOLRELAY_PORT = 2793
POOL_IPS = {"set-a": "127.0.0.2", "set-b": "127.0.0.3"}

SCENARIOS = [
    # name, size, connections, one connection per message, messages, DKIM key (None: unsigned)
    ("2 KB, reused connections", 2048, 20, False, 10000, None),
    ("100 KB, reused connections", 100 * 1024, 20, False, 2000, None),
    ("2 KB, one connection per message", 2048, 20, True, 4000, None),
    ("2 KB, DKIM RSA-2048, reused connections", 2048, 20, False, 6000, "rsa"),
    ("2 KB, DKIM Ed25519, reused connections", 2048, 20, False, 10000, "ed25519"),
]
UNSIGNED = SCENARIOS[0][0]
OPENDKIM_PORT = 2794
DKIM_DOMAIN = "example.test"
DKIM_SELECTOR = "bench"

started = []  # every Popen we start, stopped at exit


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def wait_for_port(port, timeout=20, greeting=True):
    """Until something accepts on the port (and, for SMTP, greets)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if greeting:
                    s.recv(100)
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answers on 127.0.0.1:{port}")


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn(args, **kwargs):
    process = subprocess.Popen(args, **kwargs)
    started.append(process)
    return process


def dkim_key(workdir, kind):
    """The scenario's private key (PKCS#8 PEM), made once per run with openssl."""
    path = os.path.join(workdir, f"dkim-{kind}.pem")
    if not os.path.exists(path):
        algorithm = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] if kind == "rsa" else ["-algorithm", "ed25519"]
        subprocess.run(["openssl", "genpkey"] + algorithm + ["-out", path], check=True, stderr=subprocess.DEVNULL)
        os.chmod(path, 0o600)
    return path


def relay_config(listen, sink, spool):
    """benches/two-pools.toml.in with the bench's addresses and spool folder."""
    with open(os.path.join(ROOT, "benches", "two-pools.toml.in")) as f:
        text = f.read()
    return text.replace("LISTEN", listen).replace("SINK", sink).replace("SPOOL", spool)


# ---- process accounting -------------------------------------------------------------------------

def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(stat_fields(entry)[1]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError):
                pass
    return found


def cpu_seconds(root_pid):
    """CPU of a process tree: the root (with the CPU of children it has reaped) + live children."""
    try:
        f = stat_fields(root_pid)
    except OSError:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    for child in children(root_pid):
        try:
            c = stat_fields(child)
            ticks += int(c[11]) + int(c[12])
        except OSError:
            pass
    return ticks / TICK


def memory_kb(root_pid):
    """(PSS, RSS) in kB summed over the process tree."""
    pss = rss = 0
    for pid in [root_pid] + children(root_pid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return pss, rss


# ---- the sink -----------------------------------------------------------------------------------

class Sink:
    """`poolrelay sink --stats`: counts messages and source addresses in a JSON file."""
    def __init__(self, workdir):
        self.stats = os.path.join(workdir, "sink.json")
        if os.path.exists(self.stats):
            os.remove(self.stats)
        self.process = spawn([BIN, "sink", "--listen", f"127.0.0.1:{SINK_PORT}", "--stats", self.stats],
                             stderr=subprocess.DEVNULL)
        wait_for_port(SINK_PORT)

    def delivered(self):
        return self.counts()["messages"]

    def counts(self):
        try:
            with open(self.stats) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"messages": 0, "per_ip": {}, "not_clean": 0, "dkim_signed": 0}

    def close(self):
        stop(self.process)


class PostfixSink:
    """Postfix's `smtp-sink`, dumping each message to tmpfs so it can be counted and its source
    address checked; or, with COUNT_ONLY, only counting (`-c`): cheaper for the sink, but the
    source addresses are then not checked."""
    COUNT_ONLY = False

    def __init__(self, workdir):
        shutil.rmtree(SINK_DUMP, ignore_errors=True)
        os.makedirs(SINK_DUMP)
        shutil.chown(SINK_DUMP, "postfix", "postfix")
        self.counter = os.path.join(workdir, "smtp-sink-counter.txt")
        dump = ["-c"] if self.COUNT_ONLY else ["-d", f"{SINK_DUMP}/m."]
        with open(self.counter, "w") as out:
            self.process = spawn(["smtp-sink", "-u", "postfix"] + dump + [f"127.0.0.1:{SINK_PORT}", "1024"],
                                 stdout=out, stderr=subprocess.DEVNULL)
        wait_for_port(SINK_PORT)

    def counted(self):
        """The last `mesg=N` smtp-sink -c printed."""
        with open(self.counter, "rb") as f:
            f.seek(max(0, os.path.getsize(self.counter) - 200))
            tail = f.read().decode("latin-1").replace("\r", " ").split()
        return max([int(t[5:]) for t in tail if t.startswith("mesg=") and t[5:].isdigit()], default=0)

    def delivered(self):
        if self.COUNT_ONLY:
            return self.counted()
        with os.scandir(SINK_DUMP) as entries:
            return sum(1 for _ in entries)

    def counts(self):
        if self.COUNT_ONLY:
            return {"messages": self.counted(), "per_ip": None, "not_clean": 0, "dkim_signed": None}
        per_ip = {}
        messages = not_clean = signed = 0
        for entry in os.scandir(SINK_DUMP):
            messages += 1
            with open(entry.path, "rb") as f:
                head = f.read(4096).decode("latin-1").split("\r\n\r\n")[0].split("\n\n")[0]
            signed += any(l.lower().startswith("dkim-signature:") for l in head.splitlines())
            source = next((l.split(":", 1)[1].strip() for l in head.splitlines()
                           if l.startswith("X-Client-Addr:")), None)
            if source is None:
                not_clean += 1
            else:
                per_ip[source] = per_ip.get(source, 0) + 1
        return {"messages": messages, "per_ip": per_ip, "not_clean": not_clean, "dkim_signed": signed}

    def close(self):
        stop(self.process)
        shutil.rmtree(SINK_DUMP, ignore_errors=True)


# ---- the two relays -----------------------------------------------------------------------------

class Poolrelay:
    name = "poolrelay"
    port = POOLRELAY_PORT

    def __init__(self, workdir):
        self.workdir = os.path.join(workdir, "poolrelay")
        self.process = None

    def start(self, dkim=None):
        shutil.rmtree(self.workdir, ignore_errors=True)
        os.makedirs(self.workdir)
        config = os.path.join(self.workdir, "poolrelay.toml")
        with open(config, "w") as f:
            f.write(relay_config(f"127.0.0.1:{POOLRELAY_PORT}", f"127.0.0.1:{SINK_PORT}", "spool"))
            if dkim:
                f.write(f'\n[[identity]]\nname = "{DKIM_DOMAIN}"\ndkim_selector = "{DKIM_SELECTOR}"\n'
                        f'dkim_key = "{dkim_key(os.path.dirname(self.workdir), dkim)}"\n')
        self.log = open(os.path.join(self.workdir, "relay.log"), "w")
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}  # the default level
        self.process = spawn([BIN, "serve", "--config", config], stderr=self.log, env=env)
        wait_for_port(POOLRELAY_PORT)
        return self.process.pid

    def stop(self):
        stop(self.process)
        self.log.close()

    def extra_pids(self):
        return []


class Postfix:
    """The default Postfix instance, configured as an operator would for two pools."""
    name = "Postfix"
    port = POSTFIX_PORT

    def __init__(self, workdir):
        self.master_pid = None
        self.workdir = workdir
        self.opendkim = None
        self.backup = os.path.join(workdir, "postfix-etc-backup")
        if not os.path.exists(self.backup):
            shutil.copytree("/etc/postfix", self.backup)

    def configure(self, dkim=None):
        milter = (f"smtpd_milters = inet:127.0.0.1:{OPENDKIM_PORT}\nnon_smtpd_milters = $smtpd_milters\n"
                  "milter_default_action = tempfail\n") if dkim else ""
        with open("/etc/postfix/main.cf", "w") as f:
            f.write(milter + f"""# written by poolrelay benches/compare.py
compatibility_level = 3.6
myhostname = postfix.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{SINK_PORT}
header_checks = regexp:/etc/postfix/pool_header_checks
message_size_limit = 41943040
queue_minfree = 0
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
maillog_file = /var/log/postfix-bench.log
biff = no
""")
        with open("/etc/postfix/pool_header_checks", "w") as f:
            for conf_set, transport in (("set-a", "pool_a"), ("set-b", "pool_b")):
                f.write(f"/^X-SES-CONFIGURATION-SET:[[:space:]]*{conf_set}[[:space:]]*$/ "
                        f"FILTER {transport}:[127.0.0.1]:{SINK_PORT}\n")
        master = []
        with open("/usr/share/postfix/master.cf.dist") as f:
            for line in f:
                fields = line.split()
                if line[0] in "# \t\n" or len(fields) < 8:
                    master.append(line)
                    continue
                if fields[0] == "smtp" and fields[1] == "inet":
                    fields[0] = f"127.0.0.1:{POSTFIX_PORT}"
                fields[4] = "n"  # no chroot
                master.append("  ".join(fields) + "\n")
        master.append("pool_a unix - - n - - smtp -o smtp_bind_address=127.0.0.2\n")
        master.append("pool_b unix - - n - - smtp -o smtp_bind_address=127.0.0.3\n")
        with open("/etc/postfix/master.cf", "w") as f:
            f.writelines(master)
        subprocess.run(["postfix", "check"], check=True)

    def start_opendkim(self, dkim):
        """OpenDKIM as Debian ships it, signing as poolrelay does: relaxed/relaxed, the same
        fields, From oversigned."""
        conf = os.path.join(self.workdir, "opendkim.conf")
        with open(conf, "w") as f:
            f.write(f"""Mode s
Domain {DKIM_DOMAIN}
Selector {DKIM_SELECTOR}
KeyFile {dkim_key(self.workdir, dkim)}
RequireSafeKeys false
Socket inet:{OPENDKIM_PORT}@127.0.0.1
Canonicalization relaxed/relaxed
SignatureAlgorithm {"rsa-sha256" if dkim == "rsa" else "ed25519-sha256"}
SignHeaders From,To,Cc,Subject,Date,Message-ID,Reply-To,In-Reply-To,References,MIME-Version,Content-Type,Content-Transfer-Encoding,List-Unsubscribe,List-Unsubscribe-Post,Feedback-ID
OversignHeaders From
Syslog no
PidFile {os.path.join(self.workdir, "opendkim.pid")}
""")
        self.opendkim = spawn(["opendkim", "-f", "-x", conf], stderr=subprocess.DEVNULL)
        wait_for_port(OPENDKIM_PORT, greeting=False)

    def extra_pids(self):
        return [self.opendkim.pid] if self.opendkim else []

    def start(self, dkim=None):
        self.configure(dkim)
        if dkim:
            self.start_opendkim(dkim)
        subprocess.run(["postfix", "start"], check=True, stderr=subprocess.DEVNULL)
        wait_for_port(POSTFIX_PORT)
        with open("/var/spool/postfix/pid/master.pid") as f:
            self.master_pid = int(f.read().strip())
        return self.master_pid

    def stop(self):
        if self.master_pid:
            try:
                os.kill(self.master_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.time() + 20
            while time.time() < deadline and os.path.exists(f"/proc/{self.master_pid}"):
                time.sleep(0.05)
            self.master_pid = None
        if self.opendkim:
            stop(self.opendkim)
            self.opendkim = None

    def restore(self):
        shutil.rmtree("/etc/postfix")
        shutil.copytree(self.backup, "/etc/postfix")


# ---- one run ------------------------------------------------------------------------------------

class PoolrelayLoad:
    """`poolrelay load`: pipelined sessions, configuration sets alternating, latency reported."""
    def __init__(self, port, size, connections, per_message, messages, workdir):
        self.process = subprocess.Popen(
            [BIN, "load", "--target", f"127.0.0.1:{port}", "--connections", str(connections),
             "--messages", str(messages), "--size", str(size), "--configuration-sets", "set-a,set-b", "--json"]
            + (["--connection-per-message"] if per_message else []),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        started.append(self.process)

    def done(self):
        return self.process.poll() is not None

    def report(self, elapsed):
        report = json.loads(self.process.stdout.read() or "{}")
        self.process.wait()
        return report


class SmtpSource:
    """Postfix's `smtp-source`, one process per configuration set, each with half the sessions
    and half the messages; the message is a file of the scenario's size carrying the set's
    header."""
    def __init__(self, port, size, connections, per_message, messages, workdir):
        self.processes = []
        for conf_set in POOL_IPS:
            body = os.path.join(workdir, f"message-{conf_set}-{size}.txt")
            with open(body, "w") as f:
                lines = [f"X-SES-CONFIGURATION-SET: {conf_set}", "From: app@example.test",
                         "To: user@example.test", "Subject: benchmark", ""]
                filler = "0123456789" * 7 + "abcdef"
                length = sum(len(l) + 2 for l in lines)
                while length < size:
                    lines.append(filler)
                    length += len(filler) + 2
                f.write("\n".join(lines) + "\n")
            process = subprocess.Popen(
                ["smtp-source", "-s", str(max(1, connections // 2)), "-m", str(messages // 2),
                 "-F", body, "-f", "app@example.test", "-t", "user@example.test",
                 "-M", "client.bench.test"] + ([] if per_message else ["-d"])
                + [f"127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append(process)
            self.processes.append(process)
        self.began = time.time()
        self.finished = None
        self.count = messages

    def done(self):
        if all(p.poll() is not None for p in self.processes):
            self.finished = self.finished or time.time()
            return True
        return False

    def report(self, elapsed):
        for process in self.processes:
            process.wait()
        took = (self.finished or time.time()) - self.began
        return {"accepted_per_second": self.count / took if took > 0 else 0}


TOOLS = {"poolrelay": (PoolrelayLoad, Sink), "postfix": (SmtpSource, PostfixSink)}


def run_once(relay, workdir, scenario, tools="poolrelay"):
    name, size, connections, per_message, messages, dkim = scenario
    client_kind, sink_kind = TOOLS[tools]
    sink = sink_kind(workdir)
    pid = relay.start(dkim)
    pids = [pid] + relay.extra_pids()
    cpu_before = sum(cpu_seconds(p) for p in pids)
    peak = [0, 0]
    load = client_kind(relay.port, size, connections, per_message, messages, workdir)
    began = time.time()
    delivered_at = None
    while True:
        pss, rss = memory_kb(pid)
        peak = [max(peak[0], pss), max(peak[1], rss)]
        delivered = sink.delivered()
        if delivered >= messages and load.done():
            delivered_at = delivered_at or time.time()
            break
        if delivered >= messages and delivered_at is None:
            delivered_at = time.time()
        if time.time() - began > 600:
            break
        time.sleep(0.05 if tools == "poolrelay" else 0.2)
    elapsed = (delivered_at or time.time()) - began
    report = load.report(elapsed)
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    sink_cpu = cpu_seconds(sink.process.pid)
    relay.stop()
    counts = sink.counts()
    sink.close()
    expected_each = messages // 2
    right_source = (counts["messages"] == messages and counts["not_clean"] == 0
                    and (counts["per_ip"] is None  # counted only: sources not checked
                         or all(counts["per_ip"].get(ip, 0) == expected_each for ip in POOL_IPS.values()))
                    and (dkim is None or counts.get("dkim_signed") in (None, messages)))
    return {
        "relay": relay.name,
        "delivered_per_s": counts["messages"] / elapsed if elapsed > 0 else 0,
        "accepted_per_s": report.get("accepted_per_second", 0),
        "cpu_ms_per_msg": 1000 * cpu / max(1, counts["messages"]),
        "sink_cpu_s": sink_cpu,
        "elapsed_s": elapsed,
        "peak_pss_mb": peak[0] / 1024,
        "peak_rss_mb": peak[1] / 1024,
        "p50_ms": report.get("p50_ms"),
        "p99_ms": report.get("p99_ms"),
        "delivered": counts["messages"],
        "per_ip": counts["per_ip"],
        "right_source": right_source,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--tools", choices=["both", "poolrelay", "postfix"], default="both",
                        help="client and sink: poolrelay's load/sink, Postfix's smtp-source/smtp-sink, or both")
    parser.add_argument("--only", help="run only the scenarios whose name contains this (several: a|b)")
    parser.add_argument("--sink-count-only", action="store_true",
                        help="smtp-sink only counts (-c) instead of dumping each message: a lighter sink, "
                             "but source addresses are not checked")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: Postfix is started and configured system-wide")
    # Stopped from outside (timeout, Ctrl-C): still stop Postfix and restore /etc/postfix.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    workdir = tempfile.mkdtemp(prefix="poolrelay-compare-")
    PostfixSink.COUNT_ONLY = args.sink_count_only
    postfix = Postfix(workdir)
    ours = Poolrelay(workdir)
    results = {}
    try:
        tool_sets = ["poolrelay", "postfix"] if args.tools == "both" else [args.tools]
        for scenario in SCENARIOS:
            if args.only and not any(part in scenario[0] for part in args.only.split("|")):
                continue
            scenario = scenario[:4] + (int(scenario[4] * args.scale),) + scenario[5:]
            for pair in range(args.pairs):
                for tools in tool_sets:
                    for relay in (postfix, ours):
                        log(f"{scenario[0]}, {tools} tools: pair {pair + 1}, {relay.name} ...")
                        result = run_once(relay, workdir, scenario, tools)
                        log(f"  {result['delivered_per_s']:.0f} msg/s delivered, {result['cpu_ms_per_msg']:.2f} ms CPU/msg,"
                            f" sink busy {100 * result['sink_cpu_s'] / max(result['elapsed_s'], 1e-9):.0f}% of a core,"
                            f" p99 {result['p99_ms']} ms, per IP {result['per_ip']}, right source: {result['right_source']}")
                        results.setdefault((scenario[0], tools), []).append(result)
    finally:
        for process in started:
            stop(process)
        postfix.stop()
        postfix.restore()
        shutil.rmtree(workdir, ignore_errors=True)
    lines = table(results)
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    if not all(r["right_source"] for runs in results.values() for r in runs):
        raise SystemExit("some run lost or misrouted messages: its figures are not a result")


def source_check(runs):
    if any(r["per_ip"] is None for r in runs):
        return "count only: not checked" if all(r["right_source"] for r in runs) else "NO"
    return "yes" if all(r["right_source"] for r in runs) else "NO"


def table(results):
    names = {"poolrelay": "poolrelay load / sink",
             "postfix": "smtp-source / smtp-sink -c (count only)" if PostfixSink.COUNT_ONLY else "smtp-source / smtp-sink"}
    lines = ["| scenario | client / sink | relay | delivered msg/s | accepted msg/s | CPU ms/msg | peak PSS MB | peak RSS MB | MAIL→250 p50 / p99 ms | all delivered from the right IP |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for (scenario, tools), runs in results.items():
        for relay in ("Postfix", "poolrelay"):
            mine = [r for r in runs if r["relay"] == relay]
            median = lambda key: statistics.median(r[key] for r in mine)
            latency = (f"{median('p50_ms'):.1f} / {median('p99_ms'):.1f}"
                       if all(r["p99_ms"] is not None for r in mine) else "n/a (smtp-source)")
            lines.append(f"| {scenario} | {names[tools]} | {relay} | {median('delivered_per_s'):.0f} | {median('accepted_per_s'):.0f} | "
                         f"{median('cpu_ms_per_msg'):.2f} | {median('peak_pss_mb'):.0f} | {median('peak_rss_mb'):.0f} | "
                         f"{latency} | {source_check(mine)} |")
        pf = [r for r in runs if r["relay"] == "Postfix"]
        pr = [r for r in runs if r["relay"] == "poolrelay"]
        ratios = [b["delivered_per_s"] / a["delivered_per_s"] for a, b in zip(pf, pr) if a["delivered_per_s"] > 0]
        cpu = [a["cpu_ms_per_msg"] / b["cpu_ms_per_msg"] for a, b in zip(pf, pr) if b["cpu_ms_per_msg"] > 0]
        summary.append(f"| {scenario} | {names[tools]} | {', '.join(f'{r:.2f}' for r in ratios)} | **{statistics.median(ratios):.2f}×** | "
                       f"{statistics.median(cpu):.1f}× less |")
    lines += ["", "| scenario | client / sink | delivered msg/s ratio poolrelay/Postfix per pair | median | CPU per message |",
              "|---|---|---|---|---|"] + summary
    lines += signing_cost(results)
    return lines


def signing_cost(results):
    """What signing costs poolrelay: its signed throughput against its unsigned one, per tool set."""
    lines = []
    for (scenario, tools), runs in results.items():
        if "DKIM" not in scenario or (UNSIGNED, tools) not in results:
            continue
        rate = lambda rs: statistics.median(r["delivered_per_s"] for r in rs if r["relay"] == "poolrelay")
        cpu = lambda rs: statistics.median(r["cpu_ms_per_msg"] for r in rs if r["relay"] == "poolrelay")
        unsigned, signed = results[(UNSIGNED, tools)], runs
        lines.append(f"| {scenario} | {tools} tools | {rate(signed):.0f} vs {rate(unsigned):.0f} msg/s: "
                     f"**{100 * (1 - rate(signed) / rate(unsigned)):.0f}% less** | {cpu(signed):.2f} vs {cpu(unsigned):.2f} ms CPU/msg |")
    if lines:
        lines = ["", "| poolrelay signing | tools | signed vs unsigned (2 KB, reused) | CPU per message |",
                 "|---|---|---|---|"] + lines
    return lines


if __name__ == "__main__":
    main()
