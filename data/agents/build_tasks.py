"""Writes diagram_tasks.jsonl from the task specs below (hand-written for workbench).

Each spec is a start diagram, a plain-English instruction and the edits that carry it out. The
goal is computed here by a plain dict implementation of the edits, independent of
workbench.agents.diagram, so tests/test_agents.py replaying each reference sequence through
the real tools checks the tools and the tasks against each other. Run it from the repository
root: python data/agents/build_tasks.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path


def node(type_, **props):
    return {"type": type_, "properties": props}


def diagram(nodes, edges):
    return {"nodes": nodes, "edges": [{"source": s, "target": t, "label": lab} for s, t, lab in edges]}


BASES = {
    "shop": diagram(
        {"web": node("client"), "api": node("gateway"), "orders": node("service"), "payments": node("service"),
         "orders_db": node("database", engine="postgres"), "stripe": node("external")},
        [("web", "api", ""), ("api", "orders", ""), ("api", "payments", ""), ("orders", "orders_db", ""),
         ("payments", "stripe", "")],
    ),
    "blog": diagram(
        {"browser": node("client"), "lb": node("load_balancer"), "app": node("service", replicas=2),
         "posts_db": node("database", engine="mysql"), "media": node("storage", provider="s3")},
        [("browser", "lb", ""), ("lb", "app", ""), ("app", "posts_db", ""), ("app", "media", "")],
    ),
    "chat": diagram(
        {"mobile": node("client"), "gateway": node("gateway"), "chat": node("service"), "presence": node("service"),
         "messages_db": node("database", engine="cassandra"), "redis": node("cache")},
        [("mobile", "gateway", ""), ("gateway", "chat", ""), ("gateway", "presence", ""),
         ("chat", "messages_db", ""), ("presence", "redis", "")],
    ),
    "pipeline": diagram(
        {"sensors": node("client"), "ingest": node("service"), "events": node("queue", engine="kafka"),
         "etl": node("function"), "warehouse": node("database", engine="bigquery"), "dashboards": node("service")},
        [("sensors", "ingest", ""), ("ingest", "events", ""), ("events", "etl", ""), ("etl", "warehouse", ""),
         ("dashboards", "warehouse", "")],
    ),
    "monolith": diagram(
        {"users": node("client"), "app": node("service", language="ruby"), "db": node("database", engine="postgres")},
        [("users", "app", ""), ("app", "db", "")],
    ),
    "empty": diagram({}, []),
}


def add(name, type_, **props):
    return ("add_node", {"name": name, "type": type_, **({"properties": props} if props else {})})


def delete(name):
    return ("delete_node", {"name": name})


def update(name, **changes):
    return ("update_node", {"name": name, **changes})


def edge(source, target, label=""):
    return ("add_edge", {"source": source, "target": target, **({"label": label} if label else {})})


def unedge(source, target):
    return ("delete_edge", {"source": source, "target": target})


# (id, difficulty, base, instruction, edits)
SPECS = [
    ("easy-01", "easy", "shop", "Add a cache node named orders_cache with the property engine set to redis.",
     [add("orders_cache", "cache", engine="redis")]),
    ("easy-02", "easy", "shop", "Connect orders to payments with an edge labelled charge.",
     [edge("orders", "payments", "charge")]),
    ("easy-03", "easy", "shop", "Remove the stripe node from the diagram.", [delete("stripe")]),
    ("easy-04", "easy", "shop", "Change the engine of orders_db to mysql.",
     [update("orders_db", properties={"engine": "mysql"})]),
    ("easy-05", "easy", "blog", "Rename the node app to blog_app.", [update("app", rename="blog_app")]),
    ("easy-06", "easy", "blog", "Change the type of media to external.", [update("media", type="external")]),
    ("easy-07", "easy", "chat", "Delete the edge from presence to redis.", [unedge("presence", "redis")]),
    ("easy-08", "easy", "chat", "Give chat the property replicas with the number 3.",
     [update("chat", properties={"replicas": 3})]),
    ("easy-09", "easy", "pipeline", "Add a monitoring node named alerts.", [add("alerts", "monitoring")]),
    ("easy-10", "easy", "monolith", "Remove the language property from app.",
     [update("app", remove_properties=["language"])]),
    ("easy-11", "easy", "empty", "Add a client node named frontend.", [add("frontend", "client")]),
    ("easy-12", "easy", "pipeline", "Add an edge from ingest to warehouse labelled backfill.",
     [edge("ingest", "warehouse", "backfill")]),
    ("easy-13", "easy", "blog", "Delete the edge from app to media.", [unedge("app", "media")]),
    ("easy-14", "easy", "chat", "Mark redis as persistent: set its property persistent to true (a boolean).",
     [update("redis", properties={"persistent": True})]),
    ("medium-01", "medium", "shop", "Add a cache node orders_cache with engine redis, and an edge from orders to it.",
     [add("orders_cache", "cache", engine="redis"), edge("orders", "orders_cache")]),
    ("medium-02", "medium", "shop",
     "Replace the stripe node with an external node named adyen: delete stripe, add adyen, and connect payments to adyen.",
     [delete("stripe"), add("adyen", "external"), edge("payments", "adyen")]),
    ("medium-03", "medium", "blog",
     "Add a database posts_replica (engine mysql, role replica) and an edge from posts_db to it labelled replication.",
     [add("posts_replica", "database", engine="mysql", role="replica"), edge("posts_db", "posts_replica", "replication")]),
    ("medium-04", "medium", "blog",
     "Serve media through a CDN: add an external node cdn with provider cloudflare, an edge from browser to cdn "
     "and an edge from cdn to media.",
     [add("cdn", "external", provider="cloudflare"), edge("browser", "cdn"), edge("cdn", "media")]),
    ("medium-05", "medium", "chat",
     "Add a service notifications and an external node push with provider fcm; chat sends to notifications "
     "(edge label notify) and notifications sends to push.",
     [add("notifications", "service"), add("push", "external", provider="fcm"),
      edge("chat", "notifications", "notify"), edge("notifications", "push")]),
    ("medium-06", "medium", "chat", "Rename presence to status, then set its property ttl_seconds to 30.",
     [update("presence", rename="status"), update("status", properties={"ttl_seconds": 30})]),
    ("medium-07", "medium", "pipeline",
     "Change etl's type to service with the property runtime set to spark, add a monitoring node metrics, "
     "and an edge from etl to metrics.",
     [update("etl", type="service", properties={"runtime": "spark"}), add("metrics", "monitoring"),
      edge("etl", "metrics")]),
    ("medium-08", "medium", "monolith",
     "Put a load balancer named lb between users and app: users connects to lb, lb to app, and users no longer "
     "connects to app directly.",
     [add("lb", "load_balancer"), unedge("users", "app"), edge("users", "lb"), edge("lb", "app")]),
    ("medium-09", "medium", "monolith", "Add a cache node named cache with engine memcached, used by app (edge app to cache).",
     [add("cache", "cache", engine="memcached"), edge("app", "cache")]),
    ("medium-10", "medium", "shop",
     "Remove the payments service and connect api directly to stripe with an edge labelled checkout.",
     [delete("payments"), edge("api", "stripe", "checkout")]),
    ("medium-11", "medium", "empty",
     "Draw a client web, a service server and a database store with engine sqlite; web connects to server and "
     "server to store.",
     [add("web", "client"), add("server", "service"), add("store", "database", engine="sqlite"),
      edge("web", "server"), edge("server", "store")]),
    ("medium-12", "medium", "blog",
     "Set app's replicas to 4 and give it the property autoscale set to true (a boolean); rename lb to edge_lb.",
     [update("app", properties={"replicas": 4, "autoscale": True}), update("lb", rename="edge_lb")]),
    ("medium-13", "medium", "pipeline",
     "Delete dashboards and add a service reports with an edge from reports to warehouse labelled reads.",
     [delete("dashboards"), add("reports", "service"), edge("reports", "warehouse", "reads")]),
    ("medium-14", "medium", "chat",
     "Put a queue chat_queue (engine rabbitmq) between chat and messages_db: chat sends to chat_queue, chat_queue "
     "to messages_db, and the direct edge from chat to messages_db goes away.",
     [add("chat_queue", "queue", engine="rabbitmq"), unedge("chat", "messages_db"), edge("chat", "chat_queue"),
      edge("chat_queue", "messages_db")]),
    ("hard-01", "hard", "monolith",
     "Split the monolith: add services users_svc and orders_svc and a gateway named gateway; users connects to "
     "gateway, gateway to both services, and both services to db; then delete app.",
     [add("users_svc", "service"), add("orders_svc", "service"), add("gateway", "gateway"), edge("users", "gateway"),
      edge("gateway", "users_svc"), edge("gateway", "orders_svc"), edge("users_svc", "db"), edge("orders_svc", "db"),
      delete("app")]),
    ("hard-02", "hard", "shop",
     "Add asynchronous fulfilment: a queue order_events (engine kafka), a service fulfillment, an external "
     "shipping_api and a database fulfillment_db (engine postgres). orders sends to order_events (label order "
     "placed), order_events to fulfillment, fulfillment to shipping_api and to fulfillment_db.",
     [add("order_events", "queue", engine="kafka"), add("fulfillment", "service"), add("shipping_api", "external"),
      add("fulfillment_db", "database", engine="postgres"), edge("orders", "order_events", "order placed"),
      edge("order_events", "fulfillment"), edge("fulfillment", "shipping_api"), edge("fulfillment", "fulfillment_db")]),
    ("hard-03", "hard", "blog",
     "Rename app to api. Add a service web with framework nextjs so that lb connects to web and web to api "
     "(lb no longer connects to api directly). Add a service search and a database search_index (engine "
     "elasticsearch); api connects to search and search to search_index.",
     [update("app", rename="api"), add("web", "service", framework="nextjs"), unedge("lb", "api"), edge("lb", "web"),
      edge("web", "api"), add("search", "service"), add("search_index", "database", engine="elasticsearch"),
      edge("api", "search"), edge("search", "search_index")]),
    ("hard-04", "hard", "chat",
     "Add observability: a monitoring node metrics (tool prometheus) that chat, presence and gateway each send to, "
     "and a storage node logs (provider s3) that chat and gateway each send to.",
     [add("metrics", "monitoring", tool="prometheus"), edge("chat", "metrics"), edge("presence", "metrics"),
      edge("gateway", "metrics"), add("logs", "storage", provider="s3"), edge("chat", "logs"), edge("gateway", "logs")]),
    ("hard-05", "hard", "pipeline",
     "Add a streaming path: a function stream_proc (runtime flink) fed by events, a database realtime_store (engine "
     "druid) that stream_proc writes to and dashboards reads from (edge dashboards to realtime_store); also set "
     "events' partitions property to the number 12.",
     [add("stream_proc", "function", runtime="flink"), edge("events", "stream_proc"),
      add("realtime_store", "database", engine="druid"), edge("stream_proc", "realtime_store"),
      edge("dashboards", "realtime_store"), update("events", properties={"partitions": 12})]),
    ("hard-06", "hard", "empty",
     "Draw a three-tier system: a client web_client, a load_balancer lb, services app1 and app2, and a database db "
     "(engine postgres). web_client connects to lb, lb to app1 and app2, and each app to db.",
     [add("web_client", "client"), add("lb", "load_balancer"), add("app1", "service"), add("app2", "service"),
      add("db", "database", engine="postgres"), edge("web_client", "lb"), edge("lb", "app1"), edge("lb", "app2"),
      edge("app1", "db"), edge("app2", "db")]),
    ("hard-07", "hard", "shop",
     "Migrate the orders database: add a database orders_db_v2 (engine cockroachdb), connect orders to it and "
     "orders_db to it (label migration); then cut over by deleting orders_db and renaming orders_db_v2 to orders_db.",
     [add("orders_db_v2", "database", engine="cockroachdb"), edge("orders", "orders_db_v2"),
      edge("orders_db", "orders_db_v2", "migration"), delete("orders_db"), update("orders_db_v2", rename="orders_db")]),
    ("hard-08", "hard", "chat",
     "Add an EU region: a gateway gateway_eu and a service chat_eu, both with region eu; mobile connects to "
     "gateway_eu, gateway_eu to chat_eu and chat_eu to messages_db. Set the region property of gateway and chat to us.",
     [add("gateway_eu", "gateway", region="eu"), add("chat_eu", "service", region="eu"), edge("mobile", "gateway_eu"),
      edge("gateway_eu", "chat_eu"), edge("chat_eu", "messages_db"), update("gateway", properties={"region": "us"}),
      update("chat", properties={"region": "us"})]),
    ("hard-09", "hard", "monolith",
     "Add authentication: a service auth, a database auth_db (engine postgres) and an external idp (provider okta). "
     "app calls auth (label verify), auth uses auth_db and idp. Set app's auth property to oauth2.",
     [add("auth", "service"), add("auth_db", "database", engine="postgres"), add("idp", "external", provider="okta"),
      edge("app", "auth", "verify"), edge("auth", "auth_db"), edge("auth", "idp"),
      update("app", properties={"auth": "oauth2"})]),
    ("hard-10", "hard", "blog",
     "Harden the blog: put a gateway waf (vendor cloudflare) between browser and lb (browser to waf, waf to lb, no "
     "direct browser to lb edge), and set the property encrypted to true (a boolean) on posts_db and on media.",
     [add("waf", "gateway", vendor="cloudflare"), unedge("browser", "lb"), edge("browser", "waf"), edge("waf", "lb"),
      update("posts_db", properties={"encrypted": True}), update("media", properties={"encrypted": True})]),
    ("hard-11", "hard", "pipeline",
     "Move the warehouse to snowflake (its engine property) and add data-quality checks: a function dq (runtime "
     "python) that etl sends to (label validate), and a monitoring node alerts that dq sends to.",
     [update("warehouse", properties={"engine": "snowflake"}), add("dq", "function", runtime="python"),
      edge("etl", "dq", "validate"), add("alerts", "monitoring"), edge("dq", "alerts")]),
    ("hard-12", "hard", "shop",
     "Replace the payments service with two services, billing and refunds: delete payments; api connects to both; "
     "billing connects to stripe, refunds connects to stripe with the label refund; add a database ledger (engine "
     "postgres) that billing and refunds both connect to.",
     [delete("payments"), add("billing", "service"), add("refunds", "service"), add("ledger", "database", engine="postgres"),
      edge("api", "billing"), edge("api", "refunds"), edge("billing", "stripe"), edge("refunds", "stripe", "refund"),
      edge("billing", "ledger"), edge("refunds", "ledger")]),
    ("hard-13", "hard", "empty",
     "Draw an event-driven system: a service producer, a queue broker (engine kafka), services consumer_a and "
     "consumer_b, a storage node sink and a monitoring node mon. producer sends to broker, broker to both consumers, "
     "both consumers to sink, and broker to mon.",
     [add("producer", "service"), add("broker", "queue", engine="kafka"), add("consumer_a", "service"),
      add("consumer_b", "service"), add("sink", "storage"), add("mon", "monitoring"), edge("producer", "broker"),
      edge("broker", "consumer_a"), edge("broker", "consumer_b"), edge("consumer_a", "sink"), edge("consumer_b", "sink"),
      edge("broker", "mon")]),
    ("hard-14", "hard", "chat",
     "Decommission presence: delete it, connect chat to redis, rename redis to chat_cache and set its ttl_seconds "
     "property to 300; and relabel the edge from gateway to chat as websocket.",
     [delete("presence"), edge("chat", "redis"), update("redis", rename="chat_cache"),
      update("chat_cache", properties={"ttl_seconds": 300}), unedge("gateway", "chat"),
      edge("gateway", "chat", "websocket")]),
]


def apply(d, name, args):
    """The edits in plain dicts (kept apart from workbench's tools on purpose)."""
    nodes, edges = d["nodes"], d["edges"]
    if name == "add_node":
        assert args["name"] not in nodes
        nodes[args["name"]] = {"type": args["type"], "properties": dict(args.get("properties", {}))}
    elif name == "delete_node":
        del nodes[args["name"]]
        d["edges"] = [e for e in edges if args["name"] not in (e["source"], e["target"])]
    elif name == "update_node":
        n = nodes[args["name"]]
        n["type"] = args.get("type", n["type"])
        n["properties"].update(args.get("properties", {}))
        for key in args.get("remove_properties", []):
            del n["properties"][key]
        if "rename" in args:
            nodes[args["rename"]] = nodes.pop(args["name"])
            for e in edges:
                for end in ("source", "target"):
                    if e[end] == args["name"]:
                        e[end] = args["rename"]
    elif name == "add_edge":
        assert args["source"] in nodes and args["target"] in nodes
        edges.append({"source": args["source"], "target": args["target"], "label": args.get("label", "")})
    elif name == "delete_edge":
        before = len(edges)
        d["edges"] = [e for e in edges if (e["source"], e["target"]) != (args["source"], args["target"])]
        assert len(d["edges"]) == before - 1
    else:
        raise ValueError(name)


def main() -> None:
    out = Path(__file__).with_name("diagram_tasks.jsonl")
    lines = []
    for task_id, difficulty, base, instruction, edits in SPECS:
        start = BASES[base]
        goal = copy.deepcopy(start)
        for name, args in edits:
            apply(goal, name, args)
        goal["edges"].sort(key=lambda e: (e["source"], e["target"]))
        lines.append(json.dumps({
            "id": task_id, "difficulty": difficulty, "base": base, "instruction": instruction, "start": start,
            "goal": goal, "reference": [{"name": n, "arguments": a} for n, a in edits],
            "reference_answer": "Done: " + instruction,
        }, sort_keys=True))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} tasks to {out}")


if __name__ == "__main__":
    main()
