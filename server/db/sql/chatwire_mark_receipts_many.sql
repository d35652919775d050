-- Several MarkDelivered/MarkRead calls in one round trip and one transaction
-- (server/db/receipt-store.ts markReceipts, when calls arrive while others run:
-- server/db/call-coalescer.ts). Each item is chatwire_mark_receipts' call,
-- answered as it answers it, with its index. The caller batches one
-- conversation's calls only; they run sorted by conversation and user, so
-- concurrent batches lock participants' rows in one order. A batch that fails
-- (a deadlock with another transaction, say) is retried item by item by the
-- caller.
-- Input elements: { o: index, c: conversation id, u: user id, s: up_to_seq, r: read, n: the call's now }.
create or replace function chatwire_mark_receipts_many(p_items jsonb)
returns table (
  o int, r_status text, r_last_seq bigint, r_delivered bigint, r_read bigint, r_read_shared boolean, r_updates jsonb
)
language plpgsql
as $fn$
#variable_conflict use_column
declare
  v_item record;
begin
  for v_item in
    select x.o, x.c, x.u, x.s, x.r, x.n from jsonb_to_recordset(p_items) as x(o int, c uuid, u uuid, s bigint, r boolean, n timestamptz)
    order by x.c, x.u, x.o
  loop
    return query select v_item.o, m.* from chatwire_mark_receipts(v_item.c, v_item.u, v_item.s, v_item.r, v_item.n) m;
  end loop;
end
$fn$;
