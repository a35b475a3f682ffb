// legsmi app page: sends the form to POST /api/estimate and shows exactly what it answers.
// Plain JavaScript, no framework, nothing loaded from elsewhere.
(function () {
  "use strict";
  var form = document.getElementById("estimate-form");
  var views = ["lateral", "posterior"];
  var last = null;

  function $(id) { return document.getElementById(id); }
  function text(id, value) { $(id).textContent = value == null ? "" : String(value); }
  function fmt(x, d) { return x == null ? "–" : Number(x).toFixed(d); }

  // ---- photo pickers: click, drag and drop, camera on a phone (accept="image/*")
  views.forEach(function (view) {
    var input = $(view), drop = $("drop-" + view), preview = $("preview-" + view);
    function show() {
      var f = input.files && input.files[0];
      drop.classList.toggle("has-file", !!f);
      drop.classList.remove("invalid");
      text("name-" + view, f ? f.name : "");
      if (preview.dataset.url) { URL.revokeObjectURL(preview.dataset.url); delete preview.dataset.url; }
      if (f) { preview.dataset.url = URL.createObjectURL(f); preview.src = preview.dataset.url; }
      else { preview.removeAttribute("src"); }
    }
    input.addEventListener("change", show);
    ["dragenter", "dragover"].forEach(function (ev) {
      drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (ev) {
      drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; show(); }
    });
    form.addEventListener("reset", function () { setTimeout(show, 0); });
  });

  function clearErrors() {
    $("form-error").hidden = true;
    document.querySelectorAll(".invalid").forEach(function (el) { el.classList.remove("invalid"); });
  }

  function markField(field) {
    var el = field === "sex" ? document.querySelector(".seg") :
      (views.indexOf(field) >= 0 ? $("drop-" + field) : $(field));
    if (el) { el.classList.add("invalid"); }
  }

  var LABELS = { sex: "Sex", age: "Age", height_cm: "Height", weight_kg: "Weight", reference_device: "Reference device",
    lateral: "Lateral photo", posterior: "Posterior photo", request: "Upload" };

  function showError(body, status) {
    var box = $("form-error");
    var errors = (body && body.errors) ||
      (body && body.error ? [{ field: body.field, message: body.error.replace(new RegExp("^" + body.field + ": "), "") }] : []);
    box.textContent = errors.length ? errors.map(function (e) {
      return (e.field ? (LABELS[e.field] || e.field) + ": " : "") + e.message;
    }).join(" · ") : "The server answered " + status + ".";
    box.hidden = false;
    errors.forEach(function (e) { if (e.field) { markField(e.field); } });
  }

  function verdict(r) {
    if (r.smi == null) { return ["none", "no estimate"]; }
    if (r.screening) { return [r.screening.replace(" ", "-"), r.screening === "low" ? "Low muscle mass" :
      (r.screening === "not low" ? "Not low" : "Indeterminate")]; }
    return r.low_muscle_mass ? ["low", "Low muscle mass"] : ["not-low", "Not low"];
  }

  function render(r) {
    last = r;
    $("result").hidden = false;
    text("rec-created", new Date(r.created).toLocaleString());
    text("smi-value", r.smi == null ? "–" : fmt(r.smi, 2));
    text("smi-interval", r.interval_95 ? "95 % interval " + fmt(r.interval_95[0], 2) + "–" + fmt(r.interval_95[1], 2) + " kg/m²" :
      (r.smi == null ? "" : "no calibrated interval for this model"));
    var v = verdict(r);
    var el = $("verdict");
    el.className = "verdict " + v[0];
    el.textContent = v[1];
    var sexWord = r.inputs.sex === "M" ? "men" : "women";
    text("cutoff", r.awgs_cutoff == null ? "" : "cut-off (" + r.reference_device + ", " + sexWord + "): SMI < " +
      fmt(r.awgs_cutoff, 1) + " kg/m²");
    text("p-low", r.p_low == null ? "" : "probability below the cut-off: " + Math.round(100 * r.p_low) + " %");
    $("caution").hidden = !r.caution;
    text("caution", r.caution ? "Caution: " + r.caution : "");
    $("refusal").hidden = r.status === "ok";
    var photoRefused = r.photos.some(function (p) { return p.status === "refused"; });
    text("refusal", r.status === "ok" ? "" : (photoRefused ?
      "No estimate: a photo was refused; its reason and what to do are below." : "No estimate: " + r.reason));
    text("in-sex", r.inputs.sex === "M" ? "male" : "female");
    text("in-age", fmt(r.inputs.age, 0) + " years");
    text("in-height", fmt(r.inputs.height_cm, 1) + " cm");
    text("in-weight", r.inputs.weight_kg == null ? "not given" : fmt(r.inputs.weight_kg, 1) + " kg");
    text("in-device", r.reference_device);
    var used = r.model_view === "both" ? "lateral and posterior photos" : (r.model_view ? r.model_view + " photo" : "no photo usable");
    var range = r.model.training_smi_range;
    text("in-model", r.model.name + " on the " + used + ", trained on " + r.model.trained_on +
      (range ? "; training SMI " + fmt(range[0], 1) + "–" + fmt(range[1], 1) + " kg/m²" : ""));
    var box = $("photos");
    box.textContent = "";
    r.photos.forEach(function (p) {
      var card = document.createElement("div");
      card.className = "photo";
      card.id = "photo-" + p.view;
      var h = document.createElement("h3");
      h.textContent = p.view.charAt(0).toUpperCase() + p.view.slice(1);
      var s = document.createElement("span");
      s.className = "status " + p.status;
      s.textContent = p.status === "ok" ? "measured" : p.status;
      h.appendChild(s);
      card.appendChild(h);
      if (p.annotated) {
        var img = document.createElement("img");
        img.src = p.annotated;
        img.alt = "annotated " + p.view + " photo: outline of the measured leg, the levels and the marker";
        card.appendChild(img);
      }
      if (p.reason) { var re = document.createElement("p"); re.className = "reason"; re.textContent = p.reason; card.appendChild(re); }
      if (p.advice) { var ad = document.createElement("p"); ad.className = "advice"; ad.textContent = "What to do: " + p.advice; card.appendChild(ad); }
      var m = p.measurement || {};
      if (m.calf_max_width_cm != null) {
        var me = document.createElement("p");
        me.className = "meas";
        me.textContent = "max calf width " + fmt(m.calf_max_width_cm, 1) + " cm · scale: " + (m.scale_mode || "?");
        card.appendChild(me);
      }
      box.appendChild(card);
    });
    text("result-notice", r.notice);
    $("result").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    clearErrors();
    $("result").hidden = true;  // never leave the previous person's result beside a new request
    last = null;
    var data = new FormData();
    var sex = form.querySelector("input[name=sex]:checked");
    if (sex) { data.append("sex", sex.value); }
    ["age", "height_cm", "weight_kg", "reference_device"].forEach(function (name) {
      var value = $(name).value.trim();
      if (value !== "") { data.append(name, value); }
    });
    views.forEach(function (view) {
      var f = $(view).files && $(view).files[0];
      if (f) { data.append(view, f, f.name); }
    });
    $("submit").disabled = true;
    $("busy").hidden = false;
    fetch("/api/estimate", { method: "POST", body: data })
      .then(function (resp) {
        return resp.json().catch(function () { return { error: "the server's answer was not readable" }; })
          .then(function (body) { return { ok: resp.ok, status: resp.status, body: body }; });
      })
      .then(function (res) { if (res.ok) { render(res.body); } else { showError(res.body, res.status); } })
      .catch(function () { showError({ error: "the app server did not answer; is `legsmi app` still running?" }, 0); })
      .then(function () { $("submit").disabled = false; $("busy").hidden = true; });
  });

  $("print").addEventListener("click", function () { window.print(); });
  $("download").addEventListener("click", function () {
    if (!last) { return; }
    var blob = new Blob([last.csv], { type: "text/csv" });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "legsmi-" + last.id + ".csv";
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 0);
  });
})();
