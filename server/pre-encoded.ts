/**
 * A message object may carry its own protobuf binary encoding under this
 * symbol (a realtime event arrives from the bus already encoded, the same
 * bytes for every recipient). The RPC fast path then writes these bytes on
 * binary protocols instead of encoding the message again; everything else
 * ignores the symbol. Whoever sets it must not change the message afterwards.
 */
export const preEncoded = Symbol("chatwire.preEncoded");

export type MaybePreEncoded = { [preEncoded]?: Uint8Array };
