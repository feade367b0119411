-- The example shop of `hilo demo` (and of examples/customer_support.yaml): customers, their
-- orders, and the returns the workflow creates. Recreated on every `hilo demo`.
DROP TABLE IF EXISTS returns;
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS customers;

CREATE TABLE customers (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL,
    email TEXT NOT NULL
);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    item        TEXT    NOT NULL,
    total       REAL    NOT NULL,
    status      TEXT    NOT NULL
);

CREATE TABLE returns (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL REFERENCES orders (id),
    reason     TEXT    NOT NULL,
    status     TEXT    NOT NULL DEFAULT 'open',
    created_at TEXT    NOT NULL DEFAULT (datetime('now'))
);

INSERT INTO customers (id, name, email) VALUES
    (1, 'Ana García', 'ana@example.com'),
    (2, 'Ben Okafor', 'ben@example.com'),
    -- A typo in the address on file: the confirmation of this customer's return cannot be
    -- sent, and the demo shows the return being undone (compensated).
    (3, 'Chloé Martin', 'chloe.martin(at)example.com');

INSERT INTO orders (id, customer_id, item, total, status) VALUES
    (1042, 1, 'Trail running shoes, size 40', 89.90, 'delivered'),
    (1055, 2, 'Rain jacket', 120.00, 'shipped'),
    (1077, 3, 'Ceramic teapot', 34.50, 'delivered');
