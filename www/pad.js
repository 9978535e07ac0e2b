// The drawing pad: a 28×28 digit drawn with the mouse, a finger or a pen (pointer events), shown
// large, with undo and clear. Pixels are 8-bit, white ink on black, like MNIST. In mask mode the
// same strokes paint the part to redraw (inpainting), shown in red over the digit.
const SIDE = 28;
// Ink falls off from full at CORE pixels from the stroke to none at EDGE: about MNIST's 2–3 px
// wide anti-aliased strokes. The mask brush is wider and hard-edged.
const CORE = 0.7;
const EDGE = 1.7;
const MASK_RADIUS = 2.5;

export function createPad(canvas, onChange) {
  canvas.width = SIDE;
  canvas.height = SIDE;
  const context = canvas.getContext('2d');
  let ink = new Uint8Array(SIDE * SIDE);
  let mask = new Uint8Array(SIDE * SIDE);
  let mode = 'ink';
  const history = [];
  let last = null;

  function draw() {
    const image = context.createImageData(SIDE, SIDE);
    ink.forEach((v, i) => {
      const red = mask[i] ? 0.55 : 0;
      image.data.set([v * (1 - red) + 230 * red, v * (1 - red) + 40 * red, v * (1 - red) + 40 * red, 255], 4 * i);
    });
    context.putImageData(image, 0, 0);
  }

  function stamp(x, y) {
    const reach = mode === 'ink' ? EDGE : MASK_RADIUS;
    for (let row = Math.max(0, Math.floor(y - reach)); row <= Math.min(SIDE - 1, Math.ceil(y + reach)); row++) {
      for (let col = Math.max(0, Math.floor(x - reach)); col <= Math.min(SIDE - 1, Math.ceil(x + reach)); col++) {
        const d = Math.hypot(col + 0.5 - x, row + 0.5 - y);
        const i = row * SIDE + col;
        if (mode === 'mask') {
          if (d <= MASK_RADIUS) mask[i] = 1;
          continue;
        }
        const value = Math.round(255 * Math.min(1, Math.max(0, (EDGE - d) / (EDGE - CORE))));
        if (value > ink[i]) ink[i] = value;
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
  const remember = () => history.push([ink.slice(), mask.slice()]);

  canvas.addEventListener('pointerdown', (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    remember();
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
    /** The digit, 8-bit. */
    pixels: () => ink,
    /** 1 where inpainting redraws, else 0; `null` when nothing is masked. */
    mask: () => (mask.some((v) => v) ? mask : null),
    isEmpty: () => ink.every((v) => v === 0),
    setMode(next) { mode = next; },
    clear() { remember(); ink = new Uint8Array(SIDE * SIDE); mask = new Uint8Array(SIDE * SIDE); draw(); onChange(); },
    clearMask() { remember(); mask = new Uint8Array(SIDE * SIDE); draw(); onChange(); },
    undo() { if (history.length) { [ink, mask] = history.pop(); draw(); onChange(); } },
    /** Puts a digit (784 8-bit pixels) on the pad, with no mask. */
    load(image) { remember(); ink = Uint8Array.from(image); mask = new Uint8Array(SIDE * SIDE); draw(); onChange(); },
  };
}
