// diffmusic studio: the page over the studio's JSON API (see diffmusic/studio/app.py).
import WaveSurfer from "/static/vendor/wavesurfer.esm.js";
import RegionsPlugin from "/static/vendor/regions.esm.js";
import SpectrogramPlugin from "/static/vendor/spectrogram.esm.js";
import TimelinePlugin from "/static/vendor/timeline.esm.js";

const MAIN_FLAGS = ["--prior", "--sampler", "--steps", "--seed", "--prompt", "--cfg"];
const REGION_COLOUR = "rgba(255, 120, 60, 0.28)";
const SELECTED_COLOUR = "rgba(255, 200, 40, 0.40)";
const POLL_MS = 1000;

const $ = (id) => document.getElementById(id);
const state = { options: null, file: null, editor: null, regions: null, selected: null,
                compare: null, jobs: [] };

async function api(path, init = {}) {
  const response = await fetch(path, init);
  const body = response.headers.get("content-type")?.includes("json")
    ? await response.json() : await response.text();
  if (!response.ok) {
    const detail = Array.isArray(body.detail)  // FastAPI's validation errors
      ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail || body || response.statusText);
  }
  return body;
}

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  return `${m}:${(seconds - 60 * m).toFixed(1).padStart(4, "0")}`;
}

function spectrogram(rate) {
  return SpectrogramPlugin.create({ labels: true, height: 160, scale: "mel",
                                    frequencyMax: Math.min(rate / 2, 22050), fftSamples: 1024 });
}

function surface(container, url, rate, plugins = []) {
  return WaveSurfer.create({ container, url, height: 96, waveColor: "#5b8def",
                             progressColor: "#2c4f9e", cursorColor: "#e33",
                             sampleRate: rate,
                             plugins: [TimelinePlugin.create(), spectrogram(rate), ...plugins] });
}

// ---- files and the editor --------------------------------------------------------------

async function upload(file) {
  say(`Uploading ${file.name}…`);
  try {
    const entry = await api(`/api/files?name=${encodeURIComponent(file.name)}`,
                            { method: "POST", body: file });
    say(`Opened ${entry.name}`);
    await refreshRecent();
    openFile(entry);
  } catch (error) {
    say(`Upload refused: ${error.message}`, true);
  }
}

async function refreshRecent() {
  const files = await api("/api/files");
  const select = $("recent");
  select.replaceChildren(new Option("Recent files…", ""));
  for (const f of files) select.add(new Option(`${f.name} (${clock(f.seconds)})`, f.id));
  return files;
}

function openFile(entry) {
  state.file = entry;
  state.selected = null;
  $("zoom").value = 0;
  state.editor?.destroy();
  $("editor").hidden = $("settings").hidden = false;
  $("file-title").textContent =
    `${entry.name} · ${entry.sample_rate} Hz · ${entry.channels} ch · ${clock(entry.seconds)}`;
  state.regions = RegionsPlugin.create();
  state.editor = surface($("waveform"), `/api/files/${entry.id}/audio`, entry.sample_rate,
                         [state.regions]);
  state.regions.enableDragSelection({ color: REGION_COLOUR });
  state.regions.on("region-created", () => listRegions());
  state.regions.on("region-updated", () => listRegions());
  state.regions.on("region-clicked", (region, event) => {
    event.stopPropagation();
    select(region);
  });
  state.regions.on("region-out", (region) => {
    if ($("loop").checked && region === state.selected) region.play();
  });
  state.editor.on("timeupdate", (t) => { $("clock").textContent = clock(t); });
  state.editor.on("play", () => { $("play").textContent = "❚❚ Pause"; });
  state.editor.on("pause", () => { $("play").textContent = "▶ Play"; });
  state.editor.on("ready", () => { $("waveform").dataset.ready = "true"; });
  $("waveform").dataset.ready = "false";
  listRegions();
}

function select(region) {
  state.selected = region;
  for (const r of state.regions.getRegions()) {
    r.setOptions({ color: r === region ? SELECTED_COLOUR : REGION_COLOUR });
  }
  listRegions();
}

function markedGaps() {
  return state.regions.getRegions()
    .map((r) => [r.start, r.end]).filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
}

function listRegions() {
  const list = $("regions");
  list.replaceChildren();
  for (const region of [...state.regions.getRegions()].sort((a, b) => a.start - b.start)) {
    const item = document.createElement("li");
    item.className = region === state.selected ? "selected" : "";
    const label = document.createElement("button");
    label.type = "button";
    label.textContent = `${clock(region.start)} – ${clock(region.end)}`;
    label.onclick = () => { select(region); region.play(); };
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "✕";
    remove.title = "remove this region";
    remove.onclick = () => { region.remove(); if (state.selected === region) state.selected = null;
                             listRegions(); };
    item.append(label, remove);
    list.append(item);
  }
}

function addGaps(gaps) {
  for (const [start, end] of gaps) state.regions.addRegion({ start, end, color: REGION_COLOUR });
  listRegions();
}

// ---- the form: fields of the restore command ---------------------------------------------

function fieldInput(field) {
  const wrap = document.createElement("label");
  wrap.title = field.help;
  wrap.dataset.section = field.section;
  const name = field.flag.replace(/^--/, "");
  let input;
  if (field.flag === "--prior") {
    input = document.createElement("select");
    for (const p of state.options.priors) input.add(new Option(p, p, false,
                                                               p === state.options.default_prior));
  } else if (field.kind === "choice") {
    input = document.createElement("select");
    if (field.default === null) input.add(new Option("default", ""));
    for (const c of field.choices) input.add(new Option(c, c, false, String(field.default) === c));
  } else if (field.kind === "flag") {
    input = document.createElement("input");
    input.type = "checkbox";
  } else {
    input = document.createElement("input");
    input.type = "text";
    input.placeholder = field.default !== null ? String(field.default) : "default";
  }
  input.name = field.flag;
  if (field.kind === "flag") wrap.append(input, ` ${name}`);
  else wrap.append(name, input);
  return wrap;
}

function buildForm() {
  const { fields, tasks } = state.options;
  const task = document.createElement("select");
  task.id = "task";
  task.name = "task";
  for (const t of tasks) task.add(new Option(t.replace("_", " "), t));
  const taskLabel = document.createElement("label");
  taskLabel.append("task", task);
  $("main-fields").append(taskLabel);
  for (const field of fields) {
    const element = fieldInput(field);
    if (tasks.includes(field.section) || field.section === "source_separation") {
      $("task-fields").append(element);
    } else if (MAIN_FLAGS.includes(field.flag)) {
      $("main-fields").append(element);
    } else {
      $("more-fields").append(element);
    }
  }
  task.onchange = showTaskFields;
  showTaskFields();
}

function showTaskFields() {
  const task = $("task").value;
  for (const element of $("task-fields").children) {
    element.hidden = element.dataset.section !== task;
  }
}

function formRequest() {
  const options = {};
  for (const input of $("form").querySelectorAll("[name^='--']")) {
    if (input.closest("label").hidden) continue;
    const value = input.type === "checkbox" ? input.checked : input.value.trim();
    if (value !== "" && value !== false) options[input.name] = value;
  }
  const task = $("task").value;
  return { file: state.file.id, task, options, gaps: task === "inpainting" ? markedGaps() : [] };
}

async function submit(event) {
  event.preventDefault();
  const request = formRequest();
  if (request.task === "inpainting" && request.gaps.length === 0) {
    say("Mark at least one gap: drag on the waveform, detect gaps or load labels.", true);
    return;
  }
  try {
    const job = await api("/api/jobs", { method: "POST", body: JSON.stringify(request),
                                         headers: { "content-type": "application/json" } });
    say(`Queued ${request.task} of ${state.file.name}`);
    state.jobs.unshift({ ...job, file_name: state.file.name });
    renderJobs();
    poll();
  } catch (error) {
    say(`Not started: ${error.message}`, true);
  }
}

// ---- jobs ------------------------------------------------------------------------------------

function progressText(job) {
  const p = job.progress || {};
  if (job.status === "failed") return `failed: ${job.error}`;
  if (job.status === "done") return `done in ${(job.record?.seconds_total ?? 0).toFixed(1)} s`;
  if (job.status === "queued") return "queued";
  return p.windows ? `window ${p.window}/${p.windows} · step ${p.step}/${p.steps}` : "starting";
}

function fraction(job) {
  const p = job.progress || {};
  if (job.status === "done") return 1;
  if (!p.windows || !p.steps) return 0;
  return ((p.window - 1) + p.step / p.steps) / p.windows;
}

function jobRow(job) {
  const item = document.createElement("li");
  item.className = "job";
  item.dataset.id = job.id;
  const title = document.createElement("span");
  title.textContent = `${job.file_name ?? ""} · ${job.request.task} · ` +
    new Date(job.created * 1000).toLocaleTimeString();
  const bar = document.createElement("progress");
  bar.max = 1;
  const text = document.createElement("span");
  text.className = "status";
  const open = document.createElement("button");
  open.type = "button";
  open.textContent = "Compare";
  open.hidden = true;
  item.append(title, bar, text, open);
  return item;
}

function renderJobs() {
  // rows are updated in place, so that a click is never lost to a redraw
  const list = $("jobs");
  if (!state.jobs.length) return;
  list.querySelector(".empty")?.remove();
  const rows = new Map([...list.querySelectorAll("li.job")].map((li) => [li.dataset.id, li]));
  state.jobs.forEach((job, index) => {
    const item = rows.get(job.id) ?? jobRow(job);
    item.dataset.status = job.status;
    item.querySelector("progress").value = fraction(job);
    item.querySelector(".status").textContent = progressText(job);
    const open = item.querySelector("button");
    open.hidden = job.status !== "done";
    open.onclick = () => openCompare(job);
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] ?? null);
  });
}

let polling = null;
async function poll() {
  clearTimeout(polling);
  try {
    const before = new Map(state.jobs.map((j) => [j.id, j.status]));
    state.jobs = await api("/api/jobs");
    for (const job of state.jobs) {
      const was = before.get(job.id);
      if (was && was !== job.status && (job.status === "done" || job.status === "failed")) {
        say(`${job.request.task} of ${job.file_name}: ${progressText(job)}`,
            job.status === "failed");
      }
    }
    renderJobs();
  } catch (error) {
    say(`Lost the server: ${error.message}`, true);
  }
  if (state.jobs.some((j) => j.status === "queued" || j.status === "running")) {
    polling = setTimeout(poll, POLL_MS);
  }
}

// ---- compare -----------------------------------------------------------------------------

function openCompare(job) {
  const output = job.outputs[0];
  const base = `/api/jobs/${job.id}`;
  const urls = { input: `/api/files/${job.file_id}/audio`, restored: `${base}/audio/${output}`,
                 difference: `${base}/difference` };
  state.compare?.before.destroy();
  state.compare?.after.destroy();
  $("compare").hidden = false;
  $("compare-title").textContent = `Compare: ${job.file_name} · ${job.request.task}`;
  const rate = job.record.sample_rate;
  const before = surface($("before"), urls.input, rate);
  const after = surface($("after"), urls.restored, rate);
  state.compare = { job, before, after, urls, span: loopSpan(job) };
  $("input-player").src = urls.input;
  $("restored-player").src = urls.restored;
  for (const p of Object.values(players())) p.pause();
  $("compare-play").textContent = "▶ Play";
  if (job.outputs.length === 1) $("difference-player").src = urls.difference;
  else $("difference-player").removeAttribute("src");
  $("download-wav").href = `${base}/audio/${output}?format=wav`;
  $("download-flac").href = `${base}/audio/${output}?format=flac`;
  $("record").textContent = JSON.stringify(job.record, null, 2);
  for (const ws of [before, after]) {
    ws.on("interaction", (t) => seekAll(t));
  }
  after.on("timeupdate", (t) => { $("compare-clock").textContent = clock(t); });
  $("compare").scrollIntoView({ behavior: "smooth" });
}

function loopSpan(job) {
  const gaps = job.request.gaps || [];
  if (!gaps.length) return null;
  const margin = 1.0;
  return [Math.max(0, gaps[0][0] - margin), gaps[gaps.length - 1][1] + margin];
}

function players() {
  return { input: $("input-player"), restored: $("restored-player"),
           difference: $("difference-player") };
}

function seekAll(t) {
  const { before, after } = state.compare;
  for (const ws of [before, after]) ws.setTime(t);
  for (const p of Object.values(players())) if (p.getAttribute("src")) p.currentTime = t;
}

function listening() {
  return document.querySelector("input[name=ab]:checked").value;
}

function playCompare() {
  const all = players();
  const active = Object.values(all).find((p) => !p.paused);
  if (active) {
    active.pause();
    $("compare-play").textContent = "▶ Play";
    return;
  }
  const span = state.compare.span;
  const player = all[listening()];
  if (!player.getAttribute("src")) {
    say("No difference for a job with several outputs", true);
    return;
  }
  let t = state.compare.after.getCurrentTime();
  if ($("compare-loop").checked && span && (t < span[0] || t > span[1])) t = span[0];
  player.currentTime = t;
  play(player);
}

function followPlayer(player) {
  player.addEventListener("timeupdate", () => {
    if (!state.compare || player.paused) return;
    const span = state.compare.span;
    if ($("compare-loop").checked && span && player.currentTime > span[1]) {
      player.currentTime = span[0];
    }
    for (const ws of [state.compare.before, state.compare.after]) {
      ws.setTime(player.currentTime);
    }
  });
}

function switchSource() {
  const all = players();
  const playing = Object.values(all).find((p) => !p.paused);
  if (!playing) return;
  const t = playing.currentTime;
  playing.pause();
  const next = all[listening()];
  if (!next.getAttribute("src")) return;
  next.currentTime = t;
  play(next);
}

function play(player) {
  $("compare-play").textContent = "❚❚ Pause";
  player.play().catch((error) => {
    $("compare-play").textContent = "▶ Play";
    say(`Cannot play: ${error.message}`, true);
  });
}

// ---- start ---------------------------------------------------------------------------------

async function start() {
  state.options = await api("/api/options");
  $("version").textContent = `v${state.options.version}`;
  buildForm();
  $("upload").onchange = (e) => e.target.files[0] && upload(e.target.files[0]);
  $("recent").onchange = async (e) => {
    try {
      if (e.target.value) openFile(await api(`/api/files/${e.target.value}`));
    } catch (error) {
      say(`Cannot open: ${error.message}`, true);
    }
  };
  $("play").onclick = () => {
    if ($("loop").checked && state.selected && !state.editor.isPlaying()) state.selected.play();
    else state.editor.playPause();
  };
  $("zoom").oninput = (e) => state.editor?.zoom(Number(e.target.value));
  $("detect").onclick = async () => {
    try {
      const { gaps } = await api(`/api/files/${state.file.id}/gaps`);
      addGaps(gaps);
      say(`${gaps.length} gap(s) detected`);
    } catch (error) {
      say(`Gap detection failed: ${error.message}`, true);
    }
  };
  $("labels").onchange = async (e) => {
    try {
      const { gaps } = await api("/api/labels", { method: "POST", body: e.target.files[0] });
      addGaps(gaps);
      say(`${gaps.length} region(s) loaded`);
    } catch (error) {
      say(`Labels refused: ${error.message}`, true);
    }
    e.target.value = "";
  };
  $("clear").onclick = () => { state.regions.clearRegions(); state.selected = null; listRegions(); };
  $("form").onsubmit = submit;
  $("compare-play").onclick = playCompare;
  for (const radio of document.querySelectorAll("input[name=ab]")) radio.onchange = switchSource;
  for (const player of Object.values(players())) {
    followPlayer(player);
    player.addEventListener("ended", () => { $("compare-play").textContent = "▶ Play"; });
  }
  await refreshRecent();
  await poll();
}

start().catch((error) => say(`The studio failed to start: ${error.message}`, true));
