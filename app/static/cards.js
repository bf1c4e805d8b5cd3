// One card per image: thumbnail, then placeholder rows, then the answer or the error.
//
// Everything that comes from the service or the user (labels, file names, messages) is
// set with textContent, never parsed as HTML. A card keeps the height of `top_k` rows
// from the moment it appears, so nothing jumps when its answer arrives.

const cardTemplate = document.getElementById("card-template");
const rowTemplate = document.getElementById("row-template");

// 0.004 -> "0.40%", 0.87314 -> "87.3%": two decimals below 10%, one above.
export function formatPercent(probability) {
  const percent = probability * 100;
  return `${percent.toFixed(percent < 10 ? 2 : 1)}%`;
}

const ADVICE = {
  unauthorized: "Enter the API key above; the image is sent again as soon as you do.",
  invalid_image: "Is this file an image?",
  image_too_large: "Try a smaller image (fewer pixels).",
  payload_too_large: "Try a smaller file.",
  network_error: "Check that the service is running, then try again.",
};

function advice(error) {
  if (error.status === 503 || error.status === 504) {
    const wait = error.retryAfterS ? ` in ${error.retryAfterS} s` : " in a moment";
    return `The service is busy or not ready: try again${wait}.`;
  }
  return ADVICE[error.code] || "";
}

export class Card {
  constructor(file) {
    this.file = file;
    this.run = 0; // bumped each time the image is (re)sent; late answers are ignored
    this.error = null;
    this.waiting = false; // held until the API key or the model list is there
    this.element = cardTemplate.content.firstElementChild.cloneNode(true);
    this.part = (selector) => this.element.querySelector(selector);
    this.part(".file-name").textContent = file.name || "pasted image";
    const thumb = this.part(".thumb");
    this.thumbUrl = URL.createObjectURL(file);
    thumb.alt = `Thumbnail of ${file.name || "the pasted image"}`;
    thumb.addEventListener("error", () => {
      thumb.hidden = true;
      this.part(".thumb-box").classList.add("no-preview");
    });
    thumb.src = this.thumbUrl;
  }

  onRetry(handler) {
    this.part(".retry").addEventListener("click", () => handler(this));
  }

  // Placeholder rows (as many as the answer will have) and a line saying what happens.
  showPending(topK, text) {
    this.error = null;
    this.element.setAttribute("aria-busy", "true");
    this.element.classList.remove("failed");
    this.element.style.setProperty("--rows", String(topK));
    this.part(".card-meta").textContent = text;
    this.part(".timings").textContent = "\u00a0";
    this.part(".card-error").hidden = true;
    const list = this.part(".predictions");
    list.hidden = false;
    list.replaceChildren(...Array.from({ length: topK }, () => this.row(null)));
  }

  showResult(result) {
    this.element.removeAttribute("aria-busy");
    const version = result.version == null ? "" : ` v${result.version}`;
    this.part(".card-meta").textContent = `${result.model}${version}`;
    this.part(".predictions").replaceChildren(...result.predictions.map((p) => this.row(p)));
    const t = result.timings;
    const ms = (value) => value.toFixed(1);
    this.part(".timings").textContent =
      `${ms(t.total_ms)} ms in all: queue ${ms(t.queue_ms)}, ` +
      `preprocessing ${ms(t.preprocess_ms)}, inference ${ms(t.inference_ms)}`;
  }

  showError(error) {
    this.error = error;
    this.element.removeAttribute("aria-busy");
    this.element.classList.add("failed");
    this.part(".card-meta").textContent = `Not classified (HTTP ${error.status || "error"})`;
    this.part(".predictions").hidden = true;
    this.part(".error-code").textContent = error.code;
    this.part(".error-message").textContent = error.message;
    this.part(".error-advice").textContent = advice(error);
    this.part(".error-id").textContent = error.requestId ? `Request id ${error.requestId}` : "";
    // Worth another try: the network, a slow upload, a busy or starting service.
    this.part(".retry").hidden = !(error.status === 0 || error.status === 408 || error.status >= 500);
    this.part(".card-error").hidden = false;
    this.part(".timings").textContent = "\u00a0";
  }

  row(prediction) {
    const row = rowTemplate.content.firstElementChild.cloneNode(true);
    if (prediction === null) {
      row.classList.add("placeholder");
      row.querySelector(".label").textContent = "\u00a0";
      return row;
    }
    row.querySelector(".label").textContent = prediction.label;
    row.querySelector(".percent").textContent = formatPercent(prediction.probability);
    row.querySelector(".fill").style.width = `${prediction.probability * 100}%`;
    row.title = `class ${prediction.class_index}, probability ${prediction.probability}`;
    return row;
  }
}
