-- Billing: local mirrors of the Stripe objects Gatehouse manages, the checkout
-- sessions it opened, the orders and subscriptions that webhooks confirmed, and the
-- webhook events already processed. Amounts are integer cents; timestamps Unix seconds.

CREATE TABLE billing_products (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stripe_product_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX billing_products_stripe_key ON billing_products (stripe_product_id);

CREATE TABLE billing_prices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stripe_price_id TEXT NOT NULL,
    product_id INTEGER NOT NULL REFERENCES billing_products (id),
    unit_amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    -- day, week, month or year; NULL for a one-time price.
    recurring_interval TEXT,
    nickname TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX billing_prices_stripe_key ON billing_prices (stripe_price_id);
CREATE INDEX billing_prices_product ON billing_prices (product_id);

CREATE TABLE billing_customers (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    stripe_customer_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX billing_customers_stripe_key ON billing_customers (stripe_customer_id);

-- state_at: Stripe's time of the state last applied, so that an older event delivered
-- late cannot overwrite a newer one; invoice_state_at the same for invoice fields.
CREATE TABLE billing_subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stripe_subscription_id TEXT NOT NULL,
    user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    stripe_customer_id TEXT NOT NULL,
    stripe_price_id TEXT,
    stripe_item_id TEXT,
    status TEXT NOT NULL,
    cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
    current_period_end INTEGER,
    canceled_at INTEGER,
    latest_invoice_id TEXT,
    latest_invoice_status TEXT,
    invoice_state_at INTEGER,
    state_at INTEGER NOT NULL,
    deleted_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX billing_subscriptions_stripe_key ON billing_subscriptions (stripe_subscription_id);
CREATE INDEX billing_subscriptions_user ON billing_subscriptions (user_id);

CREATE TABLE billing_checkout_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stripe_session_id TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    price_id INTEGER NOT NULL REFERENCES billing_prices (id),
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    url TEXT,
    created_at INTEGER NOT NULL,
    completed_at INTEGER
);
CREATE UNIQUE INDEX billing_checkout_sessions_stripe_key ON billing_checkout_sessions (stripe_session_id);
CREATE INDEX billing_checkout_sessions_user ON billing_checkout_sessions (user_id);

-- One order per completed checkout session, created by its webhook only.
CREATE TABLE billing_orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stripe_session_id TEXT NOT NULL,
    user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    price_id INTEGER REFERENCES billing_prices (id),
    amount_total INTEGER,
    currency TEXT,
    payment_status TEXT NOT NULL,
    status TEXT NOT NULL,
    stripe_subscription_id TEXT,
    stripe_customer_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX billing_orders_session_key ON billing_orders (stripe_session_id);
CREATE INDEX billing_orders_user ON billing_orders (user_id);

CREATE TABLE billing_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    stripe_created INTEGER NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX billing_events_event_key ON billing_events (event_id);
