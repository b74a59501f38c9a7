// Whether ops record autograd nodes. Owned here so that dispatch can read it; the public
// switches (noGrad, enableGrad) live in src/autograd.
let enabled = true;

export function isGradEnabled(): boolean {
  return enabled;
}

export function setGradEnabled(v: boolean): boolean {
  const prev = enabled;
  enabled = v;
  return prev;
}
