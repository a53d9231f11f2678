"""Ports that widely deployed software uses by default without an IANA assignment.

IANA's registry says who *registered* a port; it does not say who actually
listens there. Development servers, databases and dashboards pick defaults of
their own (often on ports IANA assigned to something else long ago), and
those defaults are what a person sees in a socket table. This list records
the most common of them, from the projects' own documentation of their
default ports. Every entry is shown with ``source="unofficial"``: it is a
convention, not an assignment.

Plain tuples rather than records keep this module cheap to import; the book
turns them into :class:`portbook.Service` records when asked.
"""

from __future__ import annotations

__all__ = ["UNOFFICIAL_PORTS"]

# (first port, last port, protocol, name, software, description)
UNOFFICIAL_PORTS: tuple[tuple[int, int, str, str, str, str], ...] = (
    (1313, 1313, "tcp", "hugo", "Hugo", "Hugo static site generator development server"),
    (1880, 1880, "tcp", "node-red", "Node-RED", "Node-RED flow editor and HTTP endpoints"),
    (2181, 2181, "tcp", "zookeeper", "Apache ZooKeeper", "ZooKeeper client port"),
    (
        3000,
        3000,
        "tcp",
        "dev-http",
        "Grafana; Ruby on Rails; many Node.js frameworks",
        "Grafana web UI, 'rails server' and common Node.js development server default",
    ),
    (3100, 3100, "tcp", "loki", "Grafana Loki", "Loki HTTP API"),
    (3128, 3128, "tcp", "squid", "Squid", "Squid HTTP proxy default listening port"),
    (
        4000,
        4000,
        "tcp",
        "phoenix",
        "Phoenix (Elixir); Jekyll",
        "Phoenix and 'jekyll serve' development server default",
    ),
    (4040, 4040, "tcp", "spark-ui", "Apache Spark", "Spark application web UI"),
    (4173, 4173, "tcp", "vite-preview", "Vite", "'vite preview' server default"),
    (4200, 4200, "tcp", "angular", "Angular CLI", "'ng serve' development server default"),
    (
        5000,
        5000,
        "tcp",
        "flask",
        "Flask; Docker Registry; macOS AirPlay Receiver",
        "Flask development server, Docker registry and AirPlay Receiver default",
    ),
    (5005, 5005, "tcp", "jdwp", "Java (JDWP)", "Conventional Java remote debugging (JDWP) port"),
    (5037, 5037, "tcp", "adb-server", "Android SDK", "Android Debug Bridge server on the host"),
    (5173, 5173, "tcp", "vite", "Vite", "Vite development server default"),
    (5555, 5555, "tcp", "adb", "Android", "Android Debug Bridge over TCP ('adb tcpip') default"),
    (5601, 5601, "tcp", "kibana", "Kibana", "Kibana web UI"),
    (6006, 6006, "tcp", "tensorboard", "TensorBoard", "TensorBoard web UI"),
    (6443, 6443, "tcp", "kube-apiserver", "Kubernetes", "Kubernetes API server (HTTPS)"),
    (6881, 6889, "tcp", "bittorrent", "BitTorrent clients", "Traditional BitTorrent peer ports"),
    (7000, 7000, "tcp", "cassandra", "Apache Cassandra", "Cassandra inter-node communication"),
    (7474, 7474, "tcp", "neo4j", "Neo4j", "Neo4j HTTP and browser UI"),
    (7687, 7687, "tcp", "neo4j-bolt", "Neo4j", "Neo4j Bolt protocol"),
    (7860, 7860, "tcp", "gradio", "Gradio", "Gradio app server default"),
    (
        8000,
        8000,
        "tcp",
        "dev-http-alt",
        "Django; Python http.server",
        "'manage.py runserver' and 'python -m http.server' default",
    ),
    (
        8080,
        8080,
        "tcp",
        "http-alt-apps",
        "Apache Tomcat; Jenkins; many proxies",
        "Common alternative HTTP port (Tomcat, Jenkins defaults)",
    ),
    (8081, 8081, "tcp", "nexus", "Sonatype Nexus Repository", "Nexus Repository Manager web UI"),
    (8086, 8086, "tcp", "influxdb", "InfluxDB", "InfluxDB HTTP API"),
    (8088, 8088, "tcp", "yarn-rm", "Apache Hadoop YARN", "YARN ResourceManager web UI"),
    (8096, 8096, "tcp", "jellyfin", "Jellyfin", "Jellyfin media server HTTP"),
    (8123, 8123, "tcp", "home-assistant", "Home Assistant", "Home Assistant web UI"),
    (8200, 8200, "tcp", "vault", "HashiCorp Vault", "Vault API"),
    (8333, 8333, "tcp", "bitcoin", "Bitcoin Core", "Bitcoin mainnet peer-to-peer"),
    (8384, 8384, "tcp", "syncthing-gui", "Syncthing", "Syncthing web GUI"),
    (
        8443,
        8443,
        "tcp",
        "https-alt-apps",
        "Apache Tomcat; many appliances",
        "Common alternative HTTPS port",
    ),
    (8500, 8500, "tcp", "consul", "HashiCorp Consul", "Consul HTTP API and UI"),
    (8501, 8501, "tcp", "streamlit", "Streamlit", "Streamlit app server default"),
    (8888, 8888, "tcp", "jupyter", "Jupyter Notebook; JupyterLab", "Jupyter server default"),
    (8983, 8983, "tcp", "solr", "Apache Solr", "Solr HTTP and admin UI"),
    (
        9000,
        9000,
        "tcp",
        "php-fpm",
        "PHP-FPM; SonarQube; MinIO",
        "PHP-FPM FastCGI, SonarQube web UI and MinIO API default",
    ),
    (9042, 9042, "tcp", "cassandra-cql", "Apache Cassandra", "Cassandra CQL native transport"),
    (9050, 9050, "tcp", "tor-socks", "Tor", "Tor SOCKS proxy"),
    (9051, 9051, "tcp", "tor-control", "Tor", "Tor control port"),
    (
        9090,
        9090,
        "tcp",
        "prometheus",
        "Prometheus; Cockpit",
        "Prometheus server and Cockpit web console",
    ),
    (9092, 9092, "tcp", "kafka", "Apache Kafka", "Kafka broker"),
    (9093, 9093, "tcp", "alertmanager", "Prometheus Alertmanager", "Alertmanager web UI and API"),
    (9100, 9100, "tcp", "node-exporter", "Prometheus node_exporter", "node_exporter metrics"),
    (9200, 9200, "tcp", "elasticsearch", "Elasticsearch; OpenSearch", "Elasticsearch REST API"),
    (9229, 9229, "tcp", "node-inspector", "Node.js", "Node.js inspector ('node --inspect')"),
    (
        9300,
        9300,
        "tcp",
        "elasticsearch-transport",
        "Elasticsearch; OpenSearch",
        "Elasticsearch node-to-node transport",
    ),
    (9411, 9411, "tcp", "zipkin", "Zipkin", "Zipkin collector and UI"),
    (9443, 9443, "tcp", "portainer", "Portainer", "Portainer web UI (HTTPS)"),
    (9870, 9870, "tcp", "hdfs-namenode-ui", "Apache Hadoop 3", "HDFS NameNode web UI"),
    (10250, 10250, "tcp", "kubelet", "Kubernetes", "kubelet API"),
    (11434, 11434, "tcp", "ollama", "Ollama", "Ollama API server"),
    (15672, 15672, "tcp", "rabbitmq-mgmt", "RabbitMQ", "RabbitMQ management UI and HTTP API"),
    (16686, 16686, "tcp", "jaeger-ui", "Jaeger", "Jaeger query UI"),
    (19132, 19132, "udp", "minecraft-bedrock", "Minecraft Bedrock Edition", "Bedrock server"),
    (19999, 19999, "tcp", "netdata", "Netdata", "Netdata dashboard"),
    (25565, 25565, "tcp", "minecraft", "Minecraft Java Edition", "Minecraft server"),
    (27015, 27015, "udp", "source-engine", "Valve Source engine games", "Source dedicated server"),
    (27017, 27017, "tcp", "mongod", "MongoDB", "MongoDB server (mongod, mongos) default"),
    (30303, 30303, "tcp", "ethereum-p2p", "Ethereum clients", "Ethereum devp2p peer connections"),
    (30303, 30303, "udp", "ethereum-discovery", "Ethereum clients", "Ethereum node discovery"),
    (32400, 32400, "tcp", "plex", "Plex Media Server", "Plex Media Server"),
    (51820, 51820, "udp", "wireguard", "WireGuard", "WireGuard port used in its documentation"),
    (64738, 64738, "tcp", "mumble", "Mumble", "Mumble server (also UDP)"),
    (64738, 64738, "udp", "mumble", "Mumble", "Mumble server voice"),
)
