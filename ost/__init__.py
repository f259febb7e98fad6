"""ost-ingest's pure core: Binance client, kline parsing, candle store. It never imports prefect."""
