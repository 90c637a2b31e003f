// The page's script: opens the adapter, runs check and bench through the wasm module
// (web/pkg, built by tools/build_web.sh) and shows what they report; runs the bundled demo
// decoder and digits UNet, their files fetched from web/pkg/models/.
//
// Query parameters, for tests and scripted runs (several runs: ?run=generate,sample):
//   ?run=check[&filter=TEXT]   run check at once; the verdict goes to the console as
//                              "tessera check: N passed, M failed, K skipped on ADAPTER"
//   ?run=bench                 run bench --quick at once; the JSON goes to the console
//                              after "tessera bench json:", the plot (SVG, one line) after
//                              "tessera bench svg:", then "tessera bench: done"
//   ?run=generate&tokens=1,2,3|&prompt=TEXT[&max_tokens=N&temperature=T&seed=S]
//                              continue the token ids (or the text) with the demo decoder
//                              (greedy unless temperature is given); logs
//                              "tessera generate json: {tokens, text, ...}"
//   ?run=sample[&count=N&steps=N&seed=S]
//                              sample digits with DDIM; logs "tessera sample png: BASE64"
// Every scripted run ends with "tessera done" (or "tessera RUN: error: ...").
import init, {
  open_adapter, case_count, check, bench, bench_plot, load_decoder, generate, load_unet, sample_digits,
} from "./pkg/tessera_web.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

function line(pre, text, failed) {
  const span = document.createElement("span");
  span.textContent = text + "\n";
  if (failed) span.className = "fail";
  pre.appendChild(span);
}

function showAdapter(report) {
  const limits = Object.entries(report.limits)
    .map(([k, v]) => `<tr><td>${k}</td><td>${Array.isArray(v) ? v.join(" × ") : v}</td></tr>`)
    .join("");
  const features = Object.entries(report.features)
    .map(([k, v]) => `${k}: ${v}`)
    .join(", ");
  $("adapter").innerHTML =
    `<p><b>${report.name}</b> (${report.backend}, ${report.device_type}, ` +
    `${report.driver} ${report.driver_info})</p><p>${features}</p><table>${limits}</table>`;
}

async function runCheck(filter) {
  $("run-check").disabled = true;
  const total = case_count(filter);
  const log = $("check-log");
  log.textContent = "";
  let failures = 0;
  const verdict = await check(filter, (index, row, failed) => {
    $("check-progress").textContent = `${index + 1} / ${total}`;
    if (failed) failures += 1;
    // Scripted runs log every row that did not pass (failures with their worst element,
    // skips with their reason).
    if (params.has("run") && !row.startsWith("pass")) {
      console.log(`tessera row: ${row.replace(/\s*\n\s*/g, " | ")}`);
    }
    if ((index + 1) % 250 === 0) console.log(`tessera check progress: ${index + 1} / ${total}`);
    line(log, row, failed);
  });
  $("verdict").textContent = verdict;
  $("run-check").disabled = false;
  return verdict;
}

async function runBench() {
  $("run-bench").disabled = true;
  const log = $("bench-log");
  log.textContent = "";
  const json = await bench(true, (row) => line(log, row, false));
  const link = $("bench-json");
  link.href = URL.createObjectURL(new Blob([json], { type: "application/json" }));
  link.hidden = false;
  const svg = bench_plot();
  $("bench-plot").innerHTML = svg;
  const plotLink = $("bench-svg");
  plotLink.href = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
  plotLink.hidden = false;
  $("run-bench").disabled = false;
  return { json, svg };
}

async function fetchFile(url, bytes) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return bytes ? new Uint8Array(await response.arrayBuffer()) : response.text();
}

// A model's loader: fetches `files` from pkg/models/DIR (safetensors as bytes, the rest as
// text) and hands them to `load` (a wasm export) in that order, once; what `load` says
// about the model goes to the element `about`.
const loaded = {};
function modelLoader(dir, files, load, about) {
  return () => {
    if (!loaded[dir]) {
      $(about).textContent = "loading…";
      loaded[dir] = Promise.all(files.map((f) => fetchFile(`pkg/models/${dir}/${f}`, f.endsWith(".safetensors"))))
        .then((contents) => { $(about).textContent = load(...contents); })
        .catch((e) => {
          delete loaded[dir];
          throw e;
        });
    }
    return loaded[dir];
  };
}

const loadDecoder = modelLoader(
  "stdlib-byte", ["config.json", "model.safetensors", "tokenizer.json"], load_decoder, "decoder-about");
const loadUnet = modelLoader(
  "digits-unet", ["config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"],
  load_unet, "unet-about");

// Generates from `tokens` (an array of ids) or else `prompt`, streaming the text into the
// output box; returns the JSON generate reports.
async function runGenerate({ prompt, tokens, maxTokens, temperature, seed }) {
  $("run-generate").disabled = true;
  const out = $("generate-out");
  try {
    await loadDecoder();
    out.textContent = tokens ? "" : prompt;
    const json = await generate(
      tokens ? undefined : prompt,
      tokens ? Uint32Array.from(tokens) : undefined,
      maxTokens, temperature, BigInt(seed),
      (piece) => { out.textContent += piece; },
    );
    const result = JSON.parse(json);
    const rate = result.generation_tokens_per_second;
    $("generate-stats").textContent =
      `${result.tokens.length} tokens, ${rate === null ? "-" : rate.toFixed(1)} tokens/s, ` +
      `stopped at ${result.stop}`;
    return json;
  } finally {
    $("run-generate").disabled = false;
  }
}

// Samples a grid of digits; shows it and returns the PNG's bytes.
async function runSample({ count, steps, seed }) {
  $("run-sample").disabled = true;
  try {
    await loadUnet();
    const started = performance.now();
    const png = await sample_digits(count, steps, BigInt(seed), (done, total) => {
      $("sample-progress").textContent = `step ${done} / ${total}`;
    });
    const seconds = (performance.now() - started) / 1000;
    $("sample-progress").textContent = `${count} images, ${steps} steps in ${seconds.toFixed(1)} s`;
    const image = $("sample-grid");
    image.src = URL.createObjectURL(new Blob([png], { type: "image/png" }));
    image.hidden = false;
    return png;
  } finally {
    $("run-sample").disabled = false;
  }
}

const number = (name, fallback) => (params.has(name) ? Number(params.get(name)) : fallback);

function base64(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

// The adapter's name from GPUAdapterInfo (wgpu reads only its description, which browsers
// leave blank unless asked for unmasked information).
async function adapterName() {
  if (!navigator.gpu) return "";
  const adapter = await navigator.gpu.requestAdapter();
  const info = adapter && adapter.info;
  if (!info) return "";
  return info.description || [info.vendor, info.architecture, info.device].filter((s) => s).join(" ");
}

async function main() {
  await init();
  let report;
  try {
    report = JSON.parse(await open_adapter(await adapterName()));
  } catch (e) {
    $("adapter").textContent = `no WebGPU adapter: ${e}`;
    console.log(`tessera check: no adapter: ${e}`);
    return;
  }
  showAdapter(report);
  console.log(`tessera adapter: ${JSON.stringify(report)}`);
  for (const id of ["run-check", "run-bench", "run-generate", "run-sample"]) $(id).disabled = false;
  $("run-check").onclick = () => runCheck(params.get("filter") || undefined);
  $("run-bench").onclick = () => runBench();
  const shown = (e) => { $("models-error").textContent = `${e}`; };
  $("run-generate").onclick = () => runGenerate({
    prompt: $("prompt").value,
    maxTokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    seed: Number($("seed").value),
  }).catch(shown);
  $("run-sample").onclick = () => runSample({
    count: 16, steps: Number($("steps").value), seed: Number($("sample-seed").value),
  }).catch(shown);

  for (const run of (params.get("run") || "").split(",").filter((r) => r)) {
    try {
      if (run === "check") {
        const verdict = await runCheck(params.get("filter") || undefined);
        console.log(`tessera check: ${verdict}`);
      } else if (run === "bench") {
        const { json, svg } = await runBench();
        console.log(`tessera bench json: ${json}`);
        console.log(`tessera bench svg: ${svg.replace(/\n/g, "")}`);
        console.log("tessera bench: done");
      } else if (run === "generate") {
        const json = await runGenerate({
          prompt: params.get("prompt") || "",
          tokens: params.has("tokens") ? params.get("tokens").split(",").map(Number) : undefined,
          maxTokens: number("max_tokens", 64),
          temperature: number("temperature", 0),
          seed: number("seed", 0),
        });
        console.log(`tessera generate json: ${json}`);
      } else if (run === "sample") {
        const png = await runSample({
          count: number("count", 16), steps: number("steps", 20), seed: number("seed", 0),
        });
        console.log(`tessera sample png: ${base64(png)}`);
      } else {
        throw new Error(`unknown run ${run}`);
      }
    } catch (e) {
      console.log(`tessera ${run}: error: ${e}`);
      return;
    }
  }
  if (params.has("run")) console.log("tessera done");
}

main();
