/**
 * One move of a small state machine written as a table of legal moves (CONVENTIONS.md:
 * explicit states, one transition that rejects illegal moves). Returns the new state.
 */
export function transition<S extends string>(moves: Readonly<Record<S, readonly S[]>>, from: S, to: S, what: string): S {
  if (!moves[from].includes(to)) throw new Error(`${what}: illegal transition ${from} -> ${to}`);
  return to;
}
