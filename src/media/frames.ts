/**
 * Where an endpoint's outgoing audio comes from when it is pulled once per 20 ms tick (an
 * agent's pacer). Frames pushed by another leg (a bridge) use MediaEndpoint.sendFrame instead.
 */
export interface FrameSource {
  /** The frame to send this tick, or undefined for silence. */
  next(): Int16Array | undefined;
  /** A frame taken earlier that must not go out any more (a barge-in came since). */
  voided(frame: Int16Array): boolean;
  /** What went out this tick: the frame, or undefined when silence did. */
  sent(frame: Int16Array | undefined): void;
  /** The stages this source adds to a pipeline description, e.g. `Agent(demo@16k) -> Pacer`. */
  describe(): string;
}
