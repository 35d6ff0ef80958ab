// The boxes over the shown page: drawn on a canvas laid over the image, in the image's pixel space
// scaled to its size on screen; one box is highlighted from the list or under the pointer.

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export class BoxLayer {
  constructor({ canvas, img, lines, caption, toggle }) {
    Object.assign(this, { canvas, img, lines, caption, toggle });
    this.boxes = [];
    this.dims = null;
    this.active = -1;
  }

  set(boxes, dims) {
    this.boxes = boxes;
    this.dims = dims;
    this.active = -1;
    this.caption.textContent = "";
    this.draw();
  }

  draw() {
    const { canvas, img } = this;
    const width = img.clientWidth;
    const height = img.clientHeight;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(width * ratio));
    canvas.height = Math.max(1, Math.round(height * ratio));
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    if (!this.toggle.checked || !this.dims || !this.boxes.length || !width || !height) return;
    const sx = width / this.dims.w;
    const sy = height / this.dims.h;
    const colors = { stroke: cssVar("--box"), fill: cssVar("--box-fill"), hi: cssVar("--box-hi"), hiFill: cssVar("--box-hi-fill") };
    const order = this.boxes.map((_, i) => i).filter((i) => i !== this.active);
    if (this.active >= 0) order.push(this.active); // the highlighted box on top
    for (const i of order) {
      const [x1, y1, x2, y2] = this.boxes[i].box;
      const active = i === this.active;
      const rect = [x1 * sx, y1 * sy, Math.max(1, (x2 - x1) * sx), Math.max(1, (y2 - y1) * sy)];
      ctx.fillStyle = active ? colors.hiFill : colors.fill;
      ctx.fillRect(...rect);
      ctx.lineWidth = active ? 2.5 : 1.5;
      ctx.strokeStyle = active ? colors.hi : colors.stroke;
      ctx.strokeRect(...rect);
    }
  }

  setActive(index) {
    if (index === this.active) return;
    this.active = index;
    for (const item of this.lines.children) item.classList.toggle("active", Number(item.dataset.index) === index);
    const box = this.boxes[index];
    this.caption.textContent = box ? `${index + 1}. ${box.label || ""} [${box.box.join(", ")}]` : "";
    this.draw();
  }

  // the smallest box under the pointer, or -1
  at(event) {
    if (!this.dims || !this.boxes.length || !this.toggle.checked) return -1;
    const rect = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * this.dims.w;
    const y = ((event.clientY - rect.top) / rect.height) * this.dims.h;
    let best = -1;
    let bestArea = Infinity;
    this.boxes.forEach((b, i) => {
      const [x1, y1, x2, y2] = b.box;
      const area = (x2 - x1) * (y2 - y1);
      if (x >= x1 && x <= x2 && y >= y1 && y <= y2 && area < bestArea) {
        best = i;
        bestArea = area;
      }
    });
    return best;
  }

  wire() {
    const draw = () => this.draw();
    this.toggle.addEventListener("change", draw);
    this.img.addEventListener("load", draw);
    new ResizeObserver(draw).observe(this.img);
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", draw);
    this.canvas.addEventListener("pointermove", (event) => this.setActive(this.at(event)));
    this.canvas.addEventListener("pointerdown", (event) => this.setActive(this.at(event)));
    this.canvas.addEventListener("pointerleave", () => this.setActive(-1));
    for (const type of ["mouseover", "focusin"]) {
      this.lines.addEventListener(type, (event) => {
        const li = event.target.closest("li");
        if (li) this.setActive(Number(li.dataset.index));
      });
    }
    this.lines.addEventListener("mouseleave", () => this.setActive(-1));
    this.lines.addEventListener("focusout", () => this.setActive(-1));
  }
}
