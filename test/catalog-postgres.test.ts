import { openCatalog } from '../src/catalog/factory.js';
import { describeCatalogContract } from './helpers/catalog-contract.js';
import { createTestDatabase } from './helpers/postgres.js';

describeCatalogContract('postgres', async () => {
  const db = await createTestDatabase();
  return { catalog: await openCatalog(db.url), reopen: () => openCatalog(db.url), cleanup: () => db.drop() };
});
