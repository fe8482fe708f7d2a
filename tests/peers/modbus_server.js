// A modbus-serial (npm) Modbus TCP server for heatd's tests: a second Modbus stack, and a
// device that, like some heat-pump and district-heating controllers, takes holding
// register writes only as function 16 (Write Multiple Registers) and answers function 6
// (Write Single Register) with exception 1, illegal function.
//
// Usage: node modbus_server.js PORT
// Prints "ready <port>" once it listens, then one line per accepted write,
// "write <function> <address> <value>,...", and stops on SIGTERM.
"use strict";

const ModbusRTU = require("modbus-serial");

const port = Number(process.argv[2]);
const holding = new Array(100).fill(0);

const vector = {
    getHoldingRegister: (address) => holding[address],
    getInputRegister: (address) => holding[address],
    setRegister: () => {
        throw { modbusErrorCode: 0x01 }; // this device knows no function 6
    },
    setRegisterArray: (address, values) => {
        values.forEach((value, i) => { holding[address + i] = value; });
        process.stdout.write(`write 16 ${address} ${values.join(",")}\n`);
    },
};

const server = new ModbusRTU.ServerTCP(vector, { host: "127.0.0.1", port, unitID: 1 });
server.on("initialized", () => process.stdout.write(`ready ${port}\n`));
server.on("serverError", (error) => {
    process.stderr.write(`${error}\n`);
    process.exit(1);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
