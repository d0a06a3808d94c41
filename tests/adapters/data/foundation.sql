-- A database as the foundation release (commit 2fb09d3, before migrations) left it: made by its
-- own SqlDatabase.create_schema() and repositories, dumped with sqlite3's iterdump().
BEGIN TRANSACTION;
CREATE TABLE generations (
	id INTEGER NOT NULL, 
	type VARCHAR(16) NOT NULL, 
	operation VARCHAR(32) NOT NULL, 
	prompt VARCHAR NOT NULL, 
	negative_prompt VARCHAR, 
	parameters JSON NOT NULL, 
	seed BIGINT, 
	width INTEGER NOT NULL, 
	height INTEGER NOT NULL, 
	file_key VARCHAR(255) NOT NULL, 
	storage_root VARCHAR NOT NULL, 
	remote_url VARCHAR, 
	task_id VARCHAR(64) NOT NULL, 
	engine VARCHAR(32) NOT NULL, 
	model VARCHAR(200), 
	cost FLOAT, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (file_key)
);
INSERT INTO "generations" VALUES(1,'image','text-to-image','a red sunset over mountains','blurry, low quality','{"width": 512, "height": 384, "steps": 25, "cfgScale": 7.5, "seed": 1001, "model": "runware:100@1", "engine": "local", "strength": null, "scale": null, "sourceId": null}',1001,512,384,'2026-01-02/00000000000000000000000000000001.jpg','/old/data/generated',NULL,'task-1','local','runware:100@1',NULL,'2026-01-02 10:01:00.123456');
INSERT INTO "generations" VALUES(2,'image','text-to-image','Ciudad de neón: café por la noche',NULL,'{"width": 512, "height": 384, "steps": 25, "cfgScale": 7.5, "seed": 1002, "model": "civitai:4384@128713", "engine": "runware", "strength": null, "scale": null, "sourceId": null}',1002,512,384,'2026-01-02/00000000000000000000000000000002.jpg','/old/data/generated','https://im.runware.ai/x.jpg','task-2','runware','civitai:4384@128713',0.0013,'2026-01-02 10:02:00.123456');
INSERT INTO "generations" VALUES(3,'image','image-to-image','a red sunset over mountains, cyberpunk',NULL,'{"width": 512, "height": 384, "steps": 25, "cfgScale": 7.5, "seed": 1003, "model": "runware:100@1", "engine": "local", "strength": 0.6, "scale": null, "sourceId": 1}',1003,512,384,'2026-01-02/00000000000000000000000000000003.jpg','/old/data/generated',NULL,'task-3','local','runware:100@1',NULL,'2026-01-02 10:03:00.123456');
INSERT INTO "generations" VALUES(4,'image','upscale','a red sunset over mountains, cyberpunk',NULL,'{"width": 512, "height": 384, "steps": null, "cfgScale": null, "seed": 1004, "model": null, "engine": "local", "strength": null, "scale": 2, "sourceId": 3}',1004,512,384,'2026-01-02/00000000000000000000000000000004.jpg','/old/data/generated',NULL,'task-4','local',NULL,NULL,'2026-01-02 10:04:00.123456');
INSERT INTO "generations" VALUES(5,'video','text-to-image','stars over the ocean',NULL,'{"width": 512, "height": 384, "steps": 25, "cfgScale": 7.5, "seed": 1005, "model": "runware:100@1", "engine": "local", "strength": null, "scale": null, "sourceId": null}',1005,512,384,'2026-01-02/00000000000000000000000000000005.jpg','/old/data/generated',NULL,'task-5','local','runware:100@1',NULL,'2026-01-02 10:05:00.123456');
CREATE TABLE settings (
	"key" VARCHAR(64) NOT NULL, 
	value JSON NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "settings" VALUES('storage_path','"./my-images"');
INSERT INTO "settings" VALUES('default_width',768);
INSERT INTO "settings" VALUES('default_cfg_scale',9.5);
CREATE INDEX ix_generations_type_created ON generations (type, created_at, id);
CREATE INDEX ix_generations_created_id ON generations (created_at, id);
CREATE INDEX ix_generations_task_id ON generations (task_id);
CREATE INDEX ix_generations_created_at ON generations (created_at);
COMMIT;
