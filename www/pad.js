// The drawing pad: a 28×28 digit drawn with the mouse, a finger or a pen (pointer events), shown
// large, with undo and clear. Pixels are 8-bit, white ink on black, like MNIST.
const SIDE = 28;
// Ink falls off from full at CORE pixels from the stroke to none at EDGE: about MNIST's 2–3 px
// wide anti-aliased strokes.
const CORE = 0.7;
const EDGE = 1.7;

export function createPad(canvas, onChange) {
  canvas.width = SIDE;
  canvas.height = SIDE;
  const context = canvas.getContext('2d');
  let pixels = new Uint8Array(SIDE * SIDE);
  const history = [];
  let last = null;

  function draw() {
    const image = context.createImageData(SIDE, SIDE);
    pixels.forEach((v, i) => { image.data.set([v, v, v, 255], 4 * i); });
    context.putImageData(image, 0, 0);
  }

  function stamp(x, y) {
    for (let row = Math.max(0, Math.floor(y - EDGE)); row <= Math.min(SIDE - 1, Math.ceil(y + EDGE)); row++) {
      for (let col = Math.max(0, Math.floor(x - EDGE)); col <= Math.min(SIDE - 1, Math.ceil(x + EDGE)); col++) {
        const d = Math.hypot(col + 0.5 - x, row + 0.5 - y);
        const ink = Math.round(255 * Math.min(1, Math.max(0, (EDGE - d) / (EDGE - CORE))));
        const i = row * SIDE + col;
        if (ink > pixels[i]) pixels[i] = ink;
      }
    }
  }

  // The segment from the previous point, stamped every quarter pixel.
  function strokeTo(point) {
    const from = last ?? point;
    const steps = Math.max(1, Math.ceil(Math.hypot(point.x - from.x, point.y - from.y) * 4));
    for (let s = 1; s <= steps; s++) {
      stamp(from.x + (point.x - from.x) * s / steps, from.y + (point.y - from.y) * s / steps);
    }
    last = point;
    draw();
  }

  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return { x: (event.clientX - box.left) / box.width * SIDE, y: (event.clientY - box.top) / box.height * SIDE };
  };

  canvas.addEventListener('pointerdown', (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    history.push(pixels.slice());
    last = null;
    strokeTo(at(event));
  });
  canvas.addEventListener('pointermove', (event) => {
    if (last === null || !canvas.hasPointerCapture(event.pointerId)) return;
    for (const e of event.getCoalescedEvents?.() ?? [event]) strokeTo(at(e));
  });
  const end = () => { if (last !== null) { last = null; onChange(); } };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);

  draw();
  return {
    pixels: () => pixels,
    isEmpty: () => pixels.every((v) => v === 0),
    clear() { history.push(pixels.slice()); pixels = new Uint8Array(SIDE * SIDE); draw(); onChange(); },
    undo() { if (history.length) { pixels = history.pop(); draw(); onChange(); } },
    load(image) { history.push(pixels.slice()); pixels = Uint8Array.from(image); draw(); onChange(); },
  };
}
