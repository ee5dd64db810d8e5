"""Overhead of `AnthropicGenerator.generate` over a bare SDK streaming call, on a local server.

Both sides send the same prompt (built once) to the same local Messages API server
(`tests/anthropic_server.py`) through the same SDK client settings, and read the whole
stream; the wrapper adds prompt assembly, retry bookkeeping, usage accounting, cost, citation
parsing and the streaming relay. Calls alternate between the two; the median of each is
compared, and the ratio is wrapper / bare (1.00 = no overhead).

    .venv/bin/python benchmarks/generator_overhead.py [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from anthropic_server import AnthropicServer, Reply  # noqa: E402

from workbench.config import GenerationConfig  # noqa: E402
from workbench.generation import AnthropicGenerator, anthropic_client, build_prompt  # noqa: E402
from workbench.types import Chunk, Hit  # noqa: E402

KEY = "sk-ant-benchmark"
TEXT = "Everest is 8,849 metres high [2]. It lies in the Himalaya on the border of Nepal and China [1]. " * 3
CONTEXT = [
    Hit(chunk=Chunk(id=f"doc:{i}", doc_id="doc", text=f"Passage {i} about mountains. " * 40, start=0, end=1),
        score=1.0, rank=i)
    for i in range(1, 6)
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per side")
    args = parser.parse_args()
    os.environ["ANTHROPIC_API_KEY"] = KEY
    query = "How high is Everest?"
    with AnthropicServer(api_key=KEY, responder=lambda body: Reply(text=TEXT, piece_chars=12)) as server:
        config = GenerationConfig(kind="anthropic", base_url=server.url)
        wrapper = AnthropicGenerator(config)
        bare = anthropic_client(base_url=server.url, timeout=config.timeout_s, max_retries=0)
        prompt = build_prompt(query, CONTEXT)

        def run_bare() -> str:
            with bare.messages.stream(model=config.model, max_tokens=config.max_tokens, system=list(prompt.system),
                                      messages=list(prompt.messages)) as stream:
                text = "".join(stream.text_stream)
                stream.get_final_message()
            return text

        def run_wrapper() -> str:
            return wrapper.generate(query, CONTEXT, on_text=lambda piece: None).text

        assert run_bare() == run_wrapper() == TEXT  # same work, and warm connections on both sides
        times: dict[str, list[float]] = {"bare": [], "wrapper": []}
        for _ in range(args.calls):
            for name, run in (("bare", run_bare), ("wrapper", run_wrapper)):
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
    bare_ms = 1000 * statistics.median(times["bare"])
    wrap_ms = 1000 * statistics.median(times["wrapper"])
    print(f"{args.calls} calls each, {len(TEXT)} characters streamed in 12-character deltas")
    print(f"bare SDK stream   median {bare_ms:.2f} ms/call")
    print(f"AnthropicGenerator median {wrap_ms:.2f} ms/call")
    print(f"ratio wrapper/bare {wrap_ms / bare_ms:.3f}  (overhead {wrap_ms - bare_ms:+.2f} ms/call)")


if __name__ == "__main__":
    main()
