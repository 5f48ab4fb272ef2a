"""The configuration files the roles write, rendered for the example inventories (one host,
production, the cluster) and checked by the real validator that runs without a host:
HAProxy's own check, promtool's, gixy-ng on nginx's configuration as `nginx -T` would show it.
A template that renders but that its program refuses is found here in seconds, not in a
scenario's converge."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rendering import Inventory, copy_inventory

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} is not installed: scripts/install-system-deps.sh and make venv install it")
    return found


@pytest.fixture(scope="module")
def inventories(tmp_path_factory) -> dict[str, Inventory]:
    # The cluster example leaves monitoring to the operator: one host is added for it here.
    tmp = tmp_path_factory.mktemp("inventories")
    return {
        "demo": Inventory(ROOT / "inventories" / "demo"),
        "production": Inventory(ROOT / "inventories" / "production"),
        "cluster": Inventory(copy_inventory("cluster", tmp, {"monitoring": ["mon-01.example.org"]})),
        "demo-cluster": Inventory(ROOT / "inventories" / "demo-cluster"),
    }


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate and its key, for the validators that open the files they are named."""
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


# ---- HAProxy ----

@pytest.mark.parametrize("name", ["cluster", "demo-cluster"])
def test_haproxy_accepts_the_load_balancers_configuration(inventories, tmp_path, name):
    inventory = inventories[name]
    cert, key = self_signed(tmp_path, "lb")
    pem = tmp_path / "lb-chain.pem"
    pem.write_text(cert.read_text() + key.read_text())
    lb = inventory.hosts("lb")[0]
    config = inventory.render(lb, "haproxy", "haproxy.cfg.j2", roles=("tls",),
                              extra={"haproxy_tls_pem_file": str(pem), "task_manager_tls_ca_file": str(cert)})
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    checked = subprocess.run([tool("haproxy"), "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Every app host of the inventory is a server, checked, and reached over TLS checked by name.
    servers = [line.split() for line in config.splitlines() if line.strip().startswith("server ")]
    assert [words[1] for words in servers] == inventory.hosts("task_manager")
    for words in servers:
        assert {"ssl", "verify", "required", "verifyhost"} <= set(words), words


def test_haproxy_refuses_a_configuration_broken_on_purpose(inventories, tmp_path):
    # The check above can fail: the same file with a misspelt keyword is refused.
    lb = inventories["cluster"].hosts("lb")[0]
    cert, key = self_signed(tmp_path, "lb")
    pem = tmp_path / "lb-chain.pem"
    pem.write_text(cert.read_text() + key.read_text())
    config = inventories["cluster"].render(lb, "haproxy", "haproxy.cfg.j2", roles=("tls",), extra={
        "haproxy_tls_pem_file": str(pem), "task_manager_tls_ca_file": str(cert)})
    path = tmp_path / "haproxy.cfg"
    path.write_text(config.replace("balance roundrobin", "balance round-robin"))
    checked = subprocess.run([tool("haproxy"), "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode != 0 and "Fatal errors" in checked.stderr, checked.stderr


# ---- Prometheus ----

def test_promtool_accepts_the_monitoring_hosts_configuration(inventories, tmp_path):
    inventory = inventories["cluster"]
    cert, _ = self_signed(tmp_path, "ca")
    password = tmp_path / "node-exporter.password"
    password.write_text("not-a-secret\n")
    rules = ROOT / "roles" / "monitoring" / "files" / "task-manager.rules.yml"
    config = inventory.render("mon-01.example.org", "monitoring", "prometheus.yml.j2", roles=("node_exporter",), extra={
        "monitoring_rules_file": str(rules), "task_manager_tls_ca_file": str(cert),
        "task_manager_node_exporter_password_file": str(password)})
    path = tmp_path / "prometheus.yml"
    path.write_text(config)
    checked = subprocess.run([tool("promtool"), "check", "config", str(path)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Every host is scraped for node_exporter, every app host for the API.
    every_host = sorted(inventory.inventory.hosts)
    for host in every_host:
        assert f"host: {json.dumps(host)}" in config, host
    assert config.count(":9100") + config.count(":9101") >= 1


# ---- nginx, through gixy-ng ----

# Debian's nginx.conf, with the lines the web role sets in it (lineinfile, roles/web/tasks/main.yml).
NGINX_CONF = """user www-data;
worker_processes auto;
worker_rlimit_nofile {{ web_worker_connections * 2 }};
pid /run/nginx.pid;
events { worker_connections {{ web_worker_connections }}; }
http {
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    server_tokens off;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols {{ web_tls_protocols | join(' ') }};
    ssl_prefer_server_ciphers off;
    access_log /var/log/nginx/access.log;
    error_log /var/log/nginx/error.log;
    include /etc/nginx/conf.d/*.conf;
    include /etc/nginx/sites-enabled/*;
}
"""


def nginx_dump(inventory: Inventory, host: str) -> str:
    """What `nginx -T` prints on the host once the web role has run: each file after its name.
    The facts the role sets before it writes the site (addresses it looks up, the certificate
    it chose) are given as a run would find them."""
    facts = {
        "web_lb_addresses": ["192.0.2.10"] if inventory.hosts("lb") else [],
        "web_monitoring_addresses": ["192.0.2.20"] if inventory.hosts("monitoring") else [],
        "web_plain_for_lb": False,
        "web_tls_certificate_path": "/etc/ssl/task-manager/fullchain.pem",
        "web_tls_certificate_key_path": "/etc/ssl/task-manager/privkey.pem",
    }
    files = {"/etc/nginx/nginx.conf": inventory.render_text(host, ("web",), NGINX_CONF)}
    for template, path in (("limits.conf.j2", "/etc/nginx/conf.d/task-manager-limits.conf"),
                           ("headers.conf.j2", "/etc/nginx/snippets/task-manager-headers.conf"),
                           ("proxy.conf.j2", "/etc/nginx/snippets/task-manager-proxy.conf"),
                           ("site.conf.j2", "/etc/nginx/sites-enabled/task-manager.conf")):
        files[path] = inventory.render(host, "web", template, roles=("app_service",), extra=facts)
    return "".join(f"# configuration file {path}:\n{text}\n" for path, text in files.items())


@pytest.mark.parametrize(("name", "group"), [("demo", "task_manager"), ("production", "task_manager"),
                                             ("cluster", "task_manager")])
def test_gixy_finds_nothing_of_medium_severity_in_the_site(inventories, name, group):
    inventory = inventories[name]
    host = inventory.hosts(group)[0]
    dump = nginx_dump(inventory, host)
    # try_files_is_evil_too asks for open_file_cache, which would keep serving the old release's
    # files after `current` switches (molecule/shared/verify_deploy.yml runs the same check).
    analysed = subprocess.run([tool("gixy"), "--format", "json", "--skips", "try_files_is_evil_too", "/dev/stdin"],
                              input=dump, capture_output=True, text=True, check=False)
    assert analysed.returncode in (0, 1), analysed.stderr
    findings = json.loads(analysed.stdout)
    serious = [f for f in findings if f["severity"] in ("MEDIUM", "HIGH")]
    assert serious == [], json.dumps(serious, indent=1)
    assert "server_name" in dump and "/etc/nginx/snippets/task-manager-headers.conf" in dump


def test_gixy_finds_a_header_that_a_location_drops(inventories):
    # The check above can fail: a location that adds a header of its own loses the server's
    # security headers unless it includes them again; gixy says so.
    inventory = inventories["demo"]
    host = inventory.hosts("task_manager")[0]
    dump = nginx_dump(inventory, host).replace(
        'add_header Cache-Control "no-cache" always;\n        include /etc/nginx/snippets/task-manager-headers.conf;',
        'add_header Cache-Control "no-cache" always;', 1)
    analysed = subprocess.run([tool("gixy"), "--format", "json", "/dev/stdin"], input=dump, capture_output=True,
                              text=True, check=False)
    assert any(f["plugin"] == "add_header_redefinition" for f in json.loads(analysed.stdout)), analysed.stdout


# ---- PostgreSQL's pg_hba.conf and pg_ident.conf, parsed by PostgreSQL itself ----

def test_postgresql_parses_every_line_of_the_access_rules(inventories, pg_cluster):
    # pg_hba_file_rules and pg_ident_file_mappings parse the files on disk, as a reload would,
    # without loading them: the throwaway cluster goes on with its own rules meanwhile.
    inventory = inventories["cluster"]
    db = inventory.hosts("db")[0]
    facts = {"postgresql_clients": ["192.0.2.11", "192.0.2.12"]}
    rendered = {name: inventory.render(db, "postgresql", f"{name}.j2", extra=facts)
                for name in ("pg_hba.conf", "pg_ident.conf")}
    originals = {name: (pg_cluster.data / name).read_bytes() for name in rendered}
    try:
        for name, text in rendered.items():
            (pg_cluster.data / name).write_text(text)
        rules = pg_cluster.sql("SELECT line_number, type, database, user_name, address, auth_method, error "
                               "FROM pg_hba_file_rules ORDER BY line_number")
        mappings = pg_cluster.sql("SELECT line_number, map_name, sys_name, pg_username, error "
                                  "FROM pg_ident_file_mappings ORDER BY line_number")
    finally:
        for name, data in originals.items():
            (pg_cluster.data / name).write_bytes(data)
    # The throwaway cluster runs without TLS: the one remark it may make on the hostssl lines.
    errors = [row for row in rules if row[-1] and "SSL is disabled" not in row[-1]]
    assert errors == [] and [row for row in mappings if row[-1]] == [], (errors, mappings)
    # Each app host reaches the database over TLS with a password; everything else is refused last.
    hostssl = [row for row in rules if row[1] == "hostssl"]
    assert sorted(row[4] for row in hostssl) == facts["postgresql_clients"]
    assert all(row[5] == "scram-sha-256" for row in hostssl)
    assert [row[5] for row in rules[-3:]] == ["reject"] * 3
    assert {row[1] for row in mappings} == {"task_manager_admin", "task_manager_owner"}
