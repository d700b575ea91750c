"""TEST-ONLY: copy Embedding Atlas 0.26.0's frontend with its WebGPU renderer made to run without
the `shader-f16` feature, which SwiftShader (headless Chromium without a GPU) lacks. The blur
buffers go from f16 to f32; every edit must apply exactly once, so a new version fails loudly.
Users never get this copy: real browsers on a GPU have shader-f16.
(From ../shared/reference/embedding-atlas.md, section 4.)"""

from __future__ import annotations

import re
import shutil
from pathlib import Path


def make_f32_static(out: Path) -> Path:
    import embedding_atlas

    src = Path(embedding_atlas.__file__).parent / "static"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out)
    js = next((out / "assets").glob("index-*.js"))
    t = js.read_text()

    def rep(old: str, new: str) -> None:
        nonlocal t
        assert t.count(old) == 1, f"pattern not found once (another version?): {old[:60]}"
        t = t.replace(old, new)

    i = t.index("enable f16;")
    j = re.compile(r"(?<!\\)`").search(t, i).start()  # end of the WGSL template literal
    shader = t[i:j].replace("enable f16;", "").replace("array<f16>", "array<f32>")
    t = t[:i] + shader.replace("f16(", "f32(") + t[j:]
    rep("let n=[`shader-f16`,...e]", "let n=[...e]")
    rep("p=e.derive([i,a,o],(e,t,n)=>e*t*n*2)", "p=e.derive([i,a,o],(e,t,n)=>e*t*n*4)")
    rep(
        "size:t*n*2,usage:GPUBufferUsage.COPY_DST|GPUBufferUsage.MAP_READ});return "
        "u.copyBufferToBuffer(l,0,f,0,t*n*2),e.queue.submit([u.finish()]),"
        "f.mapAsync(GPUMapMode.READ,0,t*n*2)",
        "size:t*n*4,usage:GPUBufferUsage.COPY_DST|GPUBufferUsage.MAP_READ});return "
        "u.copyBufferToBuffer(l,0,f,0,t*n*4),e.queue.submit([u.finish()]),"
        "f.mapAsync(GPUMapMode.READ,0,t*n*4)",
    )
    rep(
        "function XHe(e){let t=new Uint16Array(e)",
        "function XHe(e){return new Float32Array(e.slice(0));let t=new Uint16Array(e)",
    )
    js.write_text(t)
    return out
