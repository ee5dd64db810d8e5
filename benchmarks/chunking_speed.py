"""Chunking speed at size 256 on data/chunking/corpora/*.md, against one bare tokenizer pass."""
import statistics, time
from workbench.chunking import make_chunker, make_tokenize
from workbench.config import ChunkingConfig
from workbench.io import DATA_DIR
from workbench.types import Document

docs = [Document(id=p.stem, text=p.read_text(encoding="utf-8")) for p in sorted((DATA_DIR / "chunking" / "corpora").glob("*.md"))]
wiki = next(d for d in docs if d.id == "wikitexts")

def best(fn, reps=5):
    times = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return statistics.median(times)

for tokenizer in ("embedding", "whitespace", "claude"):
    tok = make_tokenize(tokenizer)
    base = best(lambda: [tok(d.text) for d in docs])
    print(f"[{tokenizer}] one tokenizer pass over all corpora ({sum(len(d.text) for d in docs)} chars): {base*1000:.0f} ms")
    for method in ("none", "fixed", "recursive", "semantic"):
        ch = make_chunker(ChunkingConfig(method=method, size=256, overlap=0, tokenizer=tokenizer))
        ch.chunk(wiki)  # warm (semantic: embeddings come from the cache after this)
        n = sum(len(ch.chunk(d)) for d in docs)
        all_t = best(lambda: [ch.chunk(d) for d in docs])
        wiki_t = best(lambda: ch.chunk(wiki))
        print(f"  {method:9s} chunks={n:4d} all={all_t*1000:6.0f} ms ({all_t/base:4.2f}x tokenizer pass)  wikitexts={wiki_t*1000:5.0f} ms")
