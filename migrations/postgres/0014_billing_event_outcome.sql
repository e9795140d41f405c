-- What the webhook did with each event it processed (order created, applied,
-- superseded, ignored), for the billing events page. Events processed before this
-- column existed keep NULL: their outcome was not recorded.
ALTER TABLE billing_events ADD COLUMN outcome TEXT;
