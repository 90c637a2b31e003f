// The page's script: opens the adapter, runs check and bench through the wasm module
// (web/pkg, built by tools/build_web.sh) and shows what they report.
//
// Query parameters, for tests and scripted runs:
//   ?run=check[&filter=TEXT]   run check at once; the verdict goes to the console as
//                              "tessera check: N passed, M failed, K skipped on ADAPTER"
//   ?run=bench                 run bench --quick at once; the JSON goes to the console
//                              after "tessera bench json:", then "tessera bench: done"
import init, { open_adapter, case_count, check, bench } from "./pkg/tessera_web.js";

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
  $("run-bench").disabled = false;
  return json;
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
  $("run-check").disabled = false;
  $("run-bench").disabled = false;
  $("run-check").onclick = () => runCheck(params.get("filter") || undefined);
  $("run-bench").onclick = () => runBench();
  try {
    if (params.get("run") === "check") {
      const verdict = await runCheck(params.get("filter") || undefined);
      console.log(`tessera check: ${verdict}`);
    } else if (params.get("run") === "bench") {
      const json = await runBench();
      console.log(`tessera bench json: ${json}`);
      console.log("tessera bench: done");
    }
  } catch (e) {
    console.log(`tessera ${params.get("run")}: error: ${e}`);
  }
}

main();
