-- What the old Next.js client needs, kept without losing data.
--
-- Kanban: on the old paths a ticket's `position` is its column's id, so its place
-- within the column gets its own name. The column is renamed, not copied, so every
-- existing ticket keeps its column and its order; the (column_id, place) index follows
-- the rename. `order` is reserved in SQL, hence `sort_order`.
ALTER TABLE tickets RENAME COLUMN position TO sort_order;

-- Billing: the old client's product and price shapes show Stripe fields that have no
-- column here (images, metadata, unit_label, lookup_key, the whole recurring object,
-- ...). They are kept as the JSON object Stripe last sent; rows made before are '{}'
-- until Stripe next tells us about them, and answer the shapes' defaults meanwhile.
ALTER TABLE billing_products ADD COLUMN stripe_object TEXT NOT NULL DEFAULT '{}';
ALTER TABLE billing_prices ADD COLUMN stripe_object TEXT NOT NULL DEFAULT '{}';
-- The end of a subscription's trial (Unix seconds), which the old shape carries.
ALTER TABLE billing_subscriptions ADD COLUMN trial_end INTEGER;
