// A node-opcua server for heatd's tests: a second OPC UA stack, written by other people,
// so heatd's client is tried against more than the asyncua it is built on.
//
// Usage: node opcua_server.js CONFIG.json
// The config names the port, the namespaces in the order they are registered (the first
// gets index 2), each namespace's variables, and optionally the security set-up. The
// server prints "ready <port>" once it listens and stops cleanly on SIGTERM.
//
// {
//   "port": 4840,
//   "applicationUri": "urn:heatd:test:node-opcua",
//   "namespaces": [{"uri": "urn:plant", "variables": [
//       {"id": "Loop.SupplyTemp", "type": "Double", "value": 35.5, "writable": false}]}],
//   "security": {"certificate": "server.pem", "privateKey": "server.key.pem",
//                "pki": "pki-dir", "trusted": ["client.pem"]}
// }
"use strict";

const fs = require("fs");
const {
    OPCUAServer,
    OPCUACertificateManager,
    DataType,
    MessageSecurityMode,
    SecurityPolicy,
    Variant,
} = require("node-opcua");
const { readCertificate } = require("node-opcua-crypto");

async function certificateManager(security) {
    const manager = new OPCUACertificateManager({
        rootFolder: security.pki,
        automaticallyAcceptUnknownCertificate: false,
    });
    await manager.initialize();
    for (const file of security.trusted || []) {
        await manager.trustCertificate(readCertificate(file));
    }
    return manager;
}

async function serverOptions(config) {
    const options = {
        port: config.port,
        resourcePath: "",
        serverInfo: { applicationUri: config.applicationUri },
        buildInfo: { productName: "heatd test peer" },
        allowAnonymous: true,
    };
    const security = config.security;
    if (!security) {
        options.securityPolicies = [SecurityPolicy.None];
        options.securityModes = [MessageSecurityMode.None];
        return options;
    }
    options.certificateFile = security.certificate;
    options.privateKeyFile = security.privateKey;
    options.serverCertificateManager = await certificateManager(security);
    options.securityPolicies = [SecurityPolicy.Basic256Sha256];
    options.securityModes = [MessageSecurityMode.SignAndEncrypt];
    return options;
}

function addVariables(addressSpace, namespace, variables) {
    const folder = namespace.addFolder(addressSpace.rootFolder.objects, {
        browseName: "Plant",
        nodeId: "s=Plant",
    });
    for (const v of variables) {
        const dataType = DataType[v.type];
        const access = v.writable ? "CurrentRead | CurrentWrite" : "CurrentRead";
        namespace.addVariable({
            componentOf: folder,
            browseName: v.id,
            nodeId: `s=${v.id}`,
            dataType: v.type,
            accessLevel: access,
            userAccessLevel: access,
            value: new Variant({ dataType, value: v.value }),
        });
    }
}

async function main() {
    const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
    const server = new OPCUAServer(await serverOptions(config));
    await server.initialize();
    const addressSpace = server.engine.addressSpace;
    for (const ns of config.namespaces) {
        addVariables(addressSpace, addressSpace.registerNamespace(ns.uri), ns.variables);
    }
    await server.start();
    process.stdout.write(`ready ${server.endpoints[0].port}\n`);
    const stop = async () => {
        await server.shutdown(0);
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
});
